"""`ray-slt` subcommands of the serve stage (registered with ray_slt.cli.register)."""
