"""YAML text → validated, frozen settings and rules; every problem reported at once, with file:line.

`settings` loads the config file, `rules` loads a Refinery v2 rules file into `rules_spec` objects;
both report `problems.Problem`s and raise `problems.ConfigError`. `loader` is the generic
annotation-driven reader they share. Imports only the standard library, `yaml` and `model`.
"""
