"""csfs command line: argument parsing, output formatting, configuration. No domain logic."""
