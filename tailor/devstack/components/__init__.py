"""One module per stack component; each knows its command line, files and health probe."""
