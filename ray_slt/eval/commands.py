"""`ray-slt` subcommands of the eval stage (registered with ray_slt.cli.register)."""
