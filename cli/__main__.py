from aqpl.cli import app

app(prog_name="aqpl")
