"""The cloud's relational database: engine, schema and the SQL helpers."""

# The default SQLite file in the cloud's data_dir (when [database] url is unset).
DATABASE_FILE = "cloud.db"
