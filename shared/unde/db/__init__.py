"""Database access: the embedded local server, migrations, connection pools."""
