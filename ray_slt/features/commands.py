"""`ray-slt` subcommands of the features stage (registered with ray_slt.cli.register)."""
