"""The web page for the people who make requests (issue 16): `gapstream ui`. Needs the `ui` extra."""
