"""clipforge's wiring: CLI, config, schema, the Ray Data run, the Parquet store and DuckDB views."""
