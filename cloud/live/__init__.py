"""Live values: devices operators watch, and the newest value per channel their gateways send."""
