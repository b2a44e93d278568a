# The node.json fields of sensing and of the link's side jobs, checked at
# boot like the rest of config.py (a separate module: the unix port compiles
# each module at import, and one big module does not fit a 64 KB heap).
import json

from config import ConfigError, dirname, resolve

# The one table of sensor models: model name -> the module whose Sensors(board, cfg)
# builds the model's sensor set (None: the board's own sensors). Config validation,
# startup, tools/boards.py (which reads this line) and tests/firmware/test_driver_table.py
# all take the models from here; docs/firmware.md says how to add one.
MODELS = {"basic": None, "accel": "vibration"}
RATES = (100, 200, 400, 800, 1600, 3200)  # the ADXL345's output data rates


def board_def(path, top):
    # The board definition written by `tandem build` (hw/boards/*.toml as
    # JSON): MCU, pins, buses, sensors. Optional; {} when absent.
    full = resolve(dirname(path), top.text("board_file", "board.json"))
    try:
        with open(full) as f:
            board = json.load(f)
    except OSError:
        return {}
    except ValueError:
        raise ConfigError("%s: not valid JSON (board_file of %s)" % (full, path))
    if not isinstance(board, dict):
        raise ConfigError("%s: must be an object" % full)
    return board


def _real(section, key, low, high, default):
    value = section.obj.get(key, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
        raise ConfigError("%s: field %s must be a number in %s..%s"
                          % (section.path, section.field(key), low, high))
    return float(value)


def load(path, top, c):
    sensor = top.section("sensor", False)
    # The board definition says which sensors are fitted; "basic" without one.
    c.sensor_model = sensor.choice("model", MODELS, c.board_def.get("sensor_model", "basic"))
    c.sensor_module = MODELS[c.sensor_model]
    c.rate_hz = sensor.number("rate_hz", RATES[0], RATES[-1], 400)
    if c.rate_hz not in RATES:
        raise ConfigError("%s: field sensor.rate_hz must be one of %s" % (path, RATES))
    c.samples = sensor.number("samples", 8, 1024, 256)
    burst_ms = c.samples * 1000 // c.rate_hz
    if c.sensor_model == "accel" and burst_ms * 4 > c.period_ms * 3:
        raise ConfigError("%s: field sensor.samples: a burst of %d ms must fit in 3/4 of "
                          "period_ms (%d)" % (path, burst_ms, c.period_ms))
    c.sht_crc_every = sensor.number("sim_crc_every", 0, 1000, 0)
    commands = top.section("commands", False)
    c.cmd_poll_ms = commands.number("poll_ms", 0, 86400000, 0)
    raw = top.section("raw", False)
    c.raw_szx = raw.number("block_szx", 0, 6, 5) if raw.get("enabled", bool, False) else -1
    c.raw_crest = _real(raw, "crest_above", 0.0, 100.0, 0.0)
    c.raw_every_ms = raw.number("min_interval_ms", 0, 86400000, 60000)
    spill = top.section("spill", False)
    c.spill_bytes = spill.number("max_bytes", 0, 1 << 24, 0)
    c.spill_path = resolve(dirname(path), spill.text("path", "spill.bin"))
    c.stats_every = top.number("stats_every", 0, 1000000, 0)
