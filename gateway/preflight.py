"""Everything the daemon reads at start, checked without starting it (`check-config`, `run`).

So `tandem-gateway check-config` says OK only for a configuration the daemon
will accept, and a refusal at start is one line naming the file, not a traceback.
"""

from __future__ import annotations

from tandem.gateway.config import ConfigError, GatewayConfig
from tandem.gateway.modbus import busfile
from tandem.gateway.modbus.registers import RegisterMapError, load_register_map
from tandem.gateway.rules.loader import load_rules

# What loading a configured file raises for a bad file (its message names the file).
STARTUP_ERRORS = (ConfigError, RegisterMapError, OSError, ValueError)


def check(config: GatewayConfig) -> None:
    """Load every file the configuration names; raise one of STARTUP_ERRORS if one is bad."""
    for bus in busfile.effective(config.modbus, config.gateway.data_dir).bus:
        for unit in bus.units:
            try:
                load_register_map(unit.map)
            except OSError as exc:
                raise ConfigError(f"{unit.map}: cannot read register map of {unit.name}: "
                                  f"{exc.strerror}", "modbus") from None
    if config.rules.file is not None:
        load_rules(config.rules.file)
