"""The installer's local web page: status and live values, served by the daemon over HTTPS."""
