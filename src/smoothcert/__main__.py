from smoothcert.cli import entry

entry()
