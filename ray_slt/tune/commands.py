"""`ray-slt` subcommands of the tune stage (registered with ray_slt.cli.register)."""
