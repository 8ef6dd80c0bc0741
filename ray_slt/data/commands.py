"""`ray-slt` subcommands of the data stage (registered with ray_slt.cli.register)."""
