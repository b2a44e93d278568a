# Builds the node from node.json and runs it (main.py calls main()). A bad
# config or certificate ends in {"ev": "fatal"} and a safe halt (exit code 2
# on the host), never a crash loop.
import gc
import sys

# Run from source, the unix port compiles each module at import: compile the
# biggest first, while the heap is empty (a bundle's .mpy skip compiling).
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
        for name in ("config", "config_sensing", "modbus_config"):
            sys.modules.pop(name, None)
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


def _modbus(cfg, log):
    # The Modbus RTU slave when node.json has a "modbus" section. A port or
    # map that cannot be used is logged; the node still reports over DTLS.
    if cfg.modbus is None:
        return None
    import modbus_node

    try:
        return modbus_node.NodeBus(cfg, log)
    except (OSError, modbus_node.MapError) as e:
        log.error("error", error="modbus", detail=repr(e))
        return None


def _sensors(cfg, board, log):
    # The sensor set of the configured model (None: the board's own sensors). A
    # sensor that does not answer is as fatal as a bad config.
    if cfg.sensor_module is None:
        return None
    try:
        return __import__(cfg.sensor_module).Sensors(board, cfg)
    except (OSError, ValueError) as e:
        log.always("fatal", error="sensor",
                   detail="%s sensors not answering: %r" % (cfg.sensor_model, e))
        return False


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
    hw = board.Board(cfg)
    sensors = _sensors(cfg, hw, log)
    if sensors is False:
        return board.halt(EXIT_FATAL)
    cls = node.Node
    if cfg.sensor_model == "accel" or cfg.cmd_poll_ms or cfg.raw_szx >= 0 or cfg.spill_bytes \
            or cfg.stats_every:
        cls = __import__("fieldnode").FieldNode  # only then compiled
    # The node's buffers first, while the heap is still in one piece; then
    # the bus, whose map loading leaves small holes behind.
    n = cls(cfg, hw, dtls, log, sensors)
    bus = _modbus(cfg, log)
    if bus is not None:
        n.attach_bus(bus)
    try:
        n.run()
    except KeyboardInterrupt:
        dtls.close()
    stats = n.stats()
    n.collect_garbage()
    # modules: what this configuration loaded (tests weigh their code on the heap)
    log.always("exit", live_heap=gc.mem_alloc(), heap_size=gc.mem_alloc() + gc.mem_free(),
               modules=list(sys.modules), **stats)
    return 0
