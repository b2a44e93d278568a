# Sensor node entry point, the same on the ESP32 and the unix port:
#   micropython -X heapsize=64K firmware/main.py path/to/node.json
# On the board it runs at boot with /node.json. A bad config or certificate
# ends in {"ev": "fatal"} and a safe halt (exit code 2 on the host), never a
# crash loop.
import gc
import sys

# The unix port compiles .py at import; compile the biggest module first,
# while the heap is empty (on a board the modules are frozen instead).
import node  # noqa: I001

gc.collect()
import link
from eventlog import EventLog

# Board name -> module; only the chosen one is imported (the ESP32 one needs
# `machine`, which the unix port lacks).
BOARDS = {"host": "board_host", "esp32": "board_esp32"}
EXIT_FATAL = 2
_DEFAULT_CONFIG = "/node.json"


def _default_board():
    return "esp32" if sys.platform == "esp32" else "host"


def _load_config(path, log):
    # The config module is needed once: unload it to give its RAM back.
    import config

    try:
        return config.load(path, _default_board())
    except config.ConfigError as e:
        log.always("fatal", error="config", detail=str(e))
        return None
    finally:
        del sys.modules["config"]
        gc.collect()


def _context(cfg, log):
    try:
        return link.make_context(cfg.cert, cfg.key, cfg.ca)
    except OSError as e:
        detail = "cannot read %s, %s or %s: %r" % (cfg.cert, cfg.key, cfg.ca, e)
    except ValueError as e:
        detail = "unusable certificate or key: %s" % str(e).strip()
    log.always("fatal", error="certificate", detail=detail)
    return None


def main(argv):
    log = EventLog("info")
    cfg = _load_config(argv[1] if len(argv) > 1 else _DEFAULT_CONFIG, log)
    if cfg is None:
        return __import__(BOARDS[_default_board()]).halt(EXIT_FATAL)
    log = EventLog(cfg.log)
    board = __import__(BOARDS[cfg.board])
    ctx = _context(cfg, log)
    if ctx is None:
        return board.halt(EXIT_FATAL)
    dtls = link.DtlsLink(ctx, cfg.gateway_host, cfg.gateway_port, cfg.gateway_name)
    n = node.Node(cfg, board.Board(cfg), dtls, log)
    try:
        n.run()
    except KeyboardInterrupt:
        dtls.close()
    n.collect_garbage()
    log.always("exit", reports=n.acked, sampled=n.seq, ignored=n.ignored,
               peak_heap=n.peak_heap, live_heap=gc.mem_alloc(),
               heap_size=gc.mem_alloc() + gc.mem_free())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
