"""`ray-slt` subcommands of the training stage (registered with ray_slt.cli.register)."""
