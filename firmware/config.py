# Node configuration: a JSON file (MicroPython has no TOML), checked once at
# boot. Every problem raises ConfigError naming the file and the field, so the
# node stops with one clear message instead of failing later in a loop.
import json

VERSION = 1
BOARDS = ("host", "esp32")
LOG_LEVELS = ("debug", "info", "warn", "error")
SCENARIOS = ("normal", "bearing_fault", "over_temp")
_REQUIRED = object()


class ConfigError(Exception):
    pass


class Config:
    # Bare annotations: read by mypy, compiled to nothing by MicroPython (no
    # class attribute, no RAM). config_sensing.load fills the sensing fields.
    device_id: str
    board_def: dict
    board: str
    gateway_host: str
    gateway_port: int
    gateway_name: str
    cert: str
    key: str
    ca: str
    period_ms: int
    scenario: str
    seed: int
    max_reports: int
    log: str
    ack_timeout_ms: int
    max_retransmit: int
    handshake_timeout_ms: int
    backoff_min_ms: int
    backoff_max_ms: int
    outbox: int
    board_options: dict
    modbus: object
    sensor_model: str
    sensor_module: str | None
    rate_hz: int
    samples: int
    sht_crc_every: int
    cmd_poll_ms: int
    raw_szx: int
    raw_crest: float
    raw_every_ms: int
    spill_bytes: int
    spill_path: str
    stats_every: int


def dirname(path):
    i = path.rfind("/")
    if i < 0:
        return "."
    return path[:i] or "/"


def resolve(base, rel):
    # TLS files are named relative to the config file's directory.
    return rel if rel.startswith("/") else base + "/" + rel


def _uses_sensing(raw, path):
    if not isinstance(raw, dict):
        return False
    for key in ("board_file", "commands", "raw", "spill", "stats_every"):
        if key in raw:
            return True
    for key in raw.get("sensor", ()):
        if key not in ("scenario", "seed"):
            return True
    try:
        open(resolve(dirname(path), "board.json")).close()
        return True
    except OSError:
        return False


def _plain(c):
    # A node with the board's basic sensors and no side jobs.
    c.sensor_model = "basic"
    c.sensor_module = None
    c.rate_hz = c.samples = c.sht_crc_every = c.cmd_poll_ms = c.spill_bytes = 0
    c.raw_szx = -1
    c.stats_every = 0


class _Section:
    def __init__(self, path, name, obj):
        if not isinstance(obj, dict):
            raise ConfigError("%s: %s must be an object" % (path, name or "top level"))
        self.path = path
        self.name = name
        self.obj = obj

    def field(self, key):
        return (self.name + "." + key) if self.name else key

    def get(self, key, kind, default=_REQUIRED):
        value = self.obj.get(key, default)
        if value is _REQUIRED:
            raise ConfigError("%s: missing field %s" % (self.path, self.field(key)))
        # bool is an int subclass; a flag is never a valid number here.
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise ConfigError("%s: field %s must be %s" % (self.path, self.field(key), kind.__name__))
        return value

    def number(self, key, low, high, default=_REQUIRED):
        value = self.get(key, int, default)
        if not low <= value <= high:
            raise ConfigError("%s: field %s must be in %d..%d" % (self.path, self.field(key), low, high))
        return value

    def choice(self, key, choices, default=_REQUIRED):
        value = self.get(key, str, default)
        if value not in choices:
            raise ConfigError("%s: field %s must be one of %s" % (self.path, self.field(key), ", ".join(choices)))
        return value

    def text(self, key, default=_REQUIRED):
        value = self.get(key, str, default)
        if not 0 < len(value) <= 64:
            raise ConfigError("%s: field %s must be 1..64 characters" % (self.path, self.field(key)))
        return value

    def section(self, key, required=True):
        return _Section(self.path, self.field(key), self.get(key, dict, _REQUIRED if required else {}))


def load(path, default_board="host"):
    try:
        with open(path) as f:
            raw = json.load(f)
    except OSError as e:
        raise ConfigError("%s: cannot read (errno %s)" % (path, e.args[0] if e.args else "?"))
    except ValueError:
        raise ConfigError("%s: not valid JSON" % path)
    top = _Section(path, "", raw)
    c = Config()
    if top.get("version", int) != VERSION:
        raise ConfigError("%s: field version must be %d" % (path, VERSION))
    c.device_id = top.text("device_id")
    # Sensing and side-job fields are checked in config_sensing, compiled only
    # when node.json or a board.json uses them (a 64 KB heap counts each module).
    sensing = __import__("config_sensing") if _uses_sensing(raw, path) else None
    c.board_def = sensing.board_def(path, top) if sensing else {}
    c.board = top.choice("board", BOARDS, c.board_def.get("mcu", default_board))
    gw = top.section("gateway")
    c.gateway_host = gw.text("host")
    c.gateway_port = gw.number("port", 1, 65535, 5684)
    c.gateway_name = gw.text("name", c.gateway_host)
    tls = top.section("tls")
    base = dirname(path)
    c.cert = resolve(base, tls.text("cert"))
    c.key = resolve(base, tls.text("key"))
    c.ca = resolve(base, tls.text("ca"))
    c.period_ms = top.number("period_ms", 10, 86400000, 1000)
    sensor = top.section("sensor", False)
    c.scenario = sensor.choice("scenario", SCENARIOS, "normal")
    c.seed = sensor.number("seed", 0, 0x7FFFFFFF, 1)
    c.max_reports = top.number("max_reports", 0, 0x7FFFFFFF, 0)
    c.log = top.choice("log", LOG_LEVELS, "info")
    coap = top.section("coap", False)
    c.ack_timeout_ms = coap.number("ack_timeout_ms", 50, 60000, 2000)
    c.max_retransmit = coap.number("max_retransmit", 0, 8, 4)
    link = top.section("link", False)
    c.handshake_timeout_ms = link.number("handshake_timeout_ms", 100, 600000, 10000)
    c.backoff_min_ms = link.number("backoff_min_ms", 10, 3600000, 500)
    c.backoff_max_ms = link.number("backoff_max_ms", c.backoff_min_ms, 3600000, 30000)
    c.outbox = top.number("outbox", 1, 256, 32)
    c.board_options = top.get("board_options", dict, {})
    if sensing:
        sensing.load(path, top, c)
    else:
        _plain(c)
    # The Modbus RTU slave's fields are checked in modbus_config (compiled only when used).
    c.modbus = __import__("modbus_config").load(top.section("modbus"), base, resolve) \
        if "modbus" in raw else None
    return c
