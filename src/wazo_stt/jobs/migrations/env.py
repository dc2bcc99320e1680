"""Alembic environment: always given an open connection by ``wazo_stt.jobs.migrate`` (or ``alembic`` with
``-x url=…`` for developers writing a new revision)."""

from alembic import context
from sqlalchemy import create_engine

from wazo_stt.jobs.schema import Base

connection = context.config.attributes.get("connection")
if connection is None:  # the alembic command line: `alembic -c …/alembic.ini -x url=sqlite:///dev.db revision …`
    url = context.get_x_argument(as_dictionary=True).get("url", "sqlite:///wazo-stt-dev.db")
    connection = create_engine(url).connect()

context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
