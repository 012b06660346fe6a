"""How rows are stored and written: an exact decimal column type, the row codec, upserts.

Framework-free: callers pass sessions and models in.
"""
import copy
import datetime
import functools
import importlib
import re
from collections.abc import Callable, Iterable, Sequence
from decimal import Decimal
from itertools import repeat
from operator import mul
from typing import cast

from sqlalchemy import ColumnElement, Select, Table, func, literal_column, select
from sqlalchemy import column as sa_column
from sqlalchemy import table as sa_table
from sqlalchemy.dialects import mysql
from sqlalchemy.engine import Connection, Dialect
from sqlalchemy.orm import DeclarativeBase, Session
from sqlalchemy.types import BigInteger, Date, Integer, Numeric, TypeDecorator

UPSERT_CHUNK_SIZE = 500
# What a value is written as when this side cannot write it as MySQL would:
# no stored value reads as it, so its row is never taken as stored unchanged.
UNWRITTEN = "?"


class ScaledDecimal(TypeDecorator):
    """An exact DECIMAL(precision, scale) that stays exact on SQLite too.

    SQLite has no decimal type: NUMERIC columns hold binary floats and SUM
    adds floats. There the value is stored as an integer count of
    10**-scale units, so storage and SUM are exact; other databases use
    a native DECIMAL. Python always sees ``Decimal``.
    """

    impl = Numeric
    cache_ok = True

    def __init__(self, precision: int = 18, scale: int = 4) -> None:
        super().__init__(precision=precision, scale=scale, asdecimal=True)
        self.precision = precision
        self.scale = scale

    def load_dialect_impl(self, dialect):
        if dialect.name == "sqlite":
            return dialect.type_descriptor(BigInteger())
        return dialect.type_descriptor(Numeric(self.precision, self.scale, asdecimal=True))

    def process_bind_param(self, value, dialect):
        if value is None or dialect.name != "sqlite":
            return value
        return self.to_units(value)

    def to_units(self, value) -> int:
        """Return ``value`` as an integer count of 10**-scale; ValueError if it has more places."""
        scaled = (value if value.__class__ is Decimal else Decimal(value)).scaleb(self.scale)
        units = int(scaled)
        if units != scaled:
            raise ValueError(f"{value} has more than {self.scale} decimal places")
        return units

    def column_to_units(self, values: Sequence) -> list:
        """Return a column's ``values`` as ``to_units`` does each (None stays None).

        A column of Decimals is scaled, converted and checked by C calls
        alone (no Python call per value: a full history's columns hold tens
        of thousands); any other column value by value. Scaled by multiplying
        with 1E+scale, which moves the exponent as scaleb does, without
        parsing scaleb's arguments for each value.
        """
        try:
            scaled = list(map(mul, values, repeat(Decimal(1).scaleb(self.scale))))
            units = list(map(int, scaled))
        except TypeError:  # a None, or a value that is neither a Decimal nor an int
            return [None if value is None else self.to_units(value) for value in values]
        if units != scaled:  # a value with more places: to_units names it
            return [self.to_units(value) for value in values]
        return units

    def process_result_value(self, value, dialect):
        if value is None:
            return None
        if dialect.name == "sqlite":
            # int() refuses what is not an integer (a damaged row) with a ValueError.
            return Decimal(value if type(value) is int else int(value)).scaleb(-self.scale)
        return Decimal(value)


class RowCodec:
    """Writes rows of ``columns`` as the database stores them, for the driver's batch path.

    Tens of thousands of rows at once are written with the DBAPI's own
    ``executemany`` on an SQL text compiled once: SQLAlchemy's executemany
    costs more per row in Python than the driver and the database together.
    ``encode`` does what the column types would do to each value, the way
    this project's types need it: a ScaledDecimal becomes its integer count
    and a date its ISO text on SQLite; the MySQL driver takes both as they are.
    """

    def __init__(self, dialect: Dialect, table: Table, columns: tuple[str, ...]) -> None:
        self.dialect = dialect
        self.table = table
        self.columns = columns
        self._encoders = [_encoder(table.c[name].type, dialect) for name in columns]
        self._encoded = [(index, encode) for index, encode in enumerate(self._encoders) if encode]
        self._column_encoders = [
            (index, _column_encoder(table.c[name].type, encode))
            for index, (name, encode) in enumerate(zip(columns, self._encoders)) if encode]
        # The table again, without column types: what is read through it comes
        # back as stored, to compare with encoded values.
        self.stored = sa_table(table.name, *(sa_column(name) for name in table.c.keys()))

    def encode(self, rows: Iterable[Sequence]) -> list[tuple]:
        """Return ``rows`` (values in ``columns`` order) in the database's representation.

        A column at a time; a value that cannot be encoded fails row by row,
        so the error is the one of the first such value, as each row's
        would be on its own.
        """
        if not self._encoded:
            return [tuple(row) for row in rows]
        rows = list(rows)
        if set(map(len, rows)) != {len(self.columns)}:  # none, or rows of other lengths
            return self._encode_rows(rows)
        columns: list = list(zip(*rows))
        try:
            for index, encode_column in self._column_encoders:
                columns[index] = encode_column(columns[index])
        except (ArithmeticError, TypeError, ValueError):
            return self._encode_rows(rows)
        return list(zip(*columns))

    def _encode_rows(self, rows: list[Sequence]) -> list[tuple]:
        encoded = []
        for row in rows:
            values = list(row)
            for index, encode in self._encoded:
                if values[index] is not None:
                    values[index] = encode(values[index])
            encoded.append(tuple(values))
        return encoded

    def encode_value(self, name: str, value):
        """Return one value of column ``name`` in the database's representation."""
        encode = self._encoders[self.columns.index(name)]
        return value if encode is None or value is None else encode(value)


def rows_stored_unchanged(session: Session, codec: RowCodec, rows: Sequence[tuple],
                          names: Sequence[str], *where: ColumnElement[bool]) -> list[bool] | None:
    """Tell for each of ``rows`` (encoded) if a stored row of ``where`` has its ``names`` values.

    True only when that is certain; False means unknown: compare that row
    with the stored one. None when no row of ``where`` is stored at all
    (known on MySQL only). On MySQL/MariaDB the server writes the stored rows
    as one text (a DECIMAL(p, s) with s places, a date as YYYY-MM-DD, NULL as
    nothing), compared with the rows written the same way here: PyMySQL
    would make a Python object of every value, one call each (0.6 s for the
    benchmark's 78,500 rows). Equal texts are equal values; a value written
    otherwise here (-0, more places than the column keeps) leaves its row
    unknown. Other databases' drivers read rows in C: there every row is unknown.
    """
    if codec.dialect.name not in ("mysql", "mariadb") or not rows:
        return [False] * len(rows)
    limit: int
    texts: str | None
    limit, texts = session.execute(_stored_texts(codec, tuple(names)).where(*where)).one()
    if texts is None:
        return None
    if len(texts) >= limit:  # the text cut at the limit
        return [False] * len(rows)
    columns = list(zip(*rows))
    written = [_texts(codec.table.c[name].type, columns[codec.columns.index(name)])
               for name in names]
    return list(map(set(texts.split(";")).__contains__, map(",".join, zip(*written))))


@functools.lru_cache(maxsize=64)
def _stored_texts(codec: RowCodec, names: tuple[str, ...]) -> Select:
    """Return the query of MySQL's text of the stored rows' ``names`` values, and its limit.

    The server cuts the text at group_concat_max_len, or at max_allowed_packet
    if that is smaller. Built once: it takes as long to build as to run on an
    empty range.
    """
    stored = codec.stored.c
    row_text = func.concat_ws(",", *(func.ifnull(stored[name], "") for name in names))
    limit = func.least(literal_column("@@group_concat_max_len"),
                       literal_column("@@max_allowed_packet"))
    return select(limit, func.aggregate_strings(row_text, ";"))


def _texts(column_type, values: Sequence) -> list[str]:
    """Return ``values`` of a column of ``column_type`` as MySQL writes them as text.

    A column of one exact type is written by C calls alone, any other value
    by value; UNWRITTEN where a value would not be written as MySQL writes it.
    """
    kinds = set(map(type, values))
    if isinstance(column_type, ScaledDecimal) and kinds == {Decimal}:
        texts = list(map(str, values))
        if _column_texts(column_type.precision, column_type.scale).fullmatch(",".join(texts)):
            return texts
        exponent = Decimal(1).scaleb(-column_type.scale)
        try:
            scaled = list(map(Decimal.quantize, values, repeat(exponent)))
        except ArithmeticError:  # an infinity, or too many digits
            scaled = []
        if scaled == list(values):
            return _plain_decimal_texts(scaled)
    elif kinds == {int} and isinstance(column_type, Integer):
        return list(map(str, values))
    elif kinds == {datetime.date} and isinstance(column_type, Date):
        return list(map(datetime.date.isoformat, values))
    return [_text(column_type, value) for value in values]


@functools.lru_cache(maxsize=8)
def _column_texts(precision: int, scale: int) -> re.Pattern:
    """Return the pattern of a column's texts, joined by commas, as MySQL writes its DECIMALs.

    Each has ``scale`` places, at most ``precision - scale`` digits before
    them and no sign (str() keeps a negative zero's): a finite Decimal whose
    str() matches is written as MySQL writes it. One match checks a whole
    column, where quantizing each value took twice as long.
    """
    text = rf"[0-9]{{1,{max(precision - scale, 1)}}}+\.[0-9]{{{scale}}}"
    return re.compile(rf"{text}(?:,{text})*+")


def _text(column_type, value) -> str:
    """Return one value as ``_texts`` writes it."""
    if value is None:
        return ""
    if isinstance(column_type, ScaledDecimal) and type(value) is Decimal and value.is_finite():
        try:
            scaled = value.quantize(Decimal(1).scaleb(-column_type.scale))
        except ArithmeticError:  # too many digits
            return UNWRITTEN
        return format(scaled, "f") if scaled == value else UNWRITTEN
    if type(value) is int and isinstance(column_type, Integer):
        return str(value)
    if type(value) is datetime.date and isinstance(column_type, Date):
        return value.isoformat()
    return UNWRITTEN


def _plain_decimal_texts(values: Sequence[Decimal]) -> list[str]:
    """Return finite Decimals written as ``format(value, "f")`` writes them (no exponent).

    str() writes a finite Decimal so, at two thirds of the cost, unless it
    writes an exponent (1E+2, 1E-8; a lower-case e under a context with
    capitals=0): a column holding one is written again with format.
    """
    texts = list(map(str, values))
    joined = "".join(texts)
    if "E" in joined or "e" in joined:
        return list(map(format, values, repeat("f")))
    return texts


def row_codec(session: Session, model: type[DeclarativeBase], columns: Iterable[str]) -> RowCodec:
    """Return the codec of ``columns`` of ``model``'s table for the session's database.

    Its ``columns`` are in the table's order, whatever the order given.
    """
    table = cast(Table, model.__table__)
    wanted = set(columns)
    ordered = tuple(name for name in table.c.keys() if name in wanted)
    return _row_codec(session.get_bind().dialect, table, ordered)


@functools.lru_cache(maxsize=64)
def _row_codec(dialect: Dialect, table: Table, columns: tuple[str, ...]) -> RowCodec:
    return RowCodec(dialect, table, columns)


def _column_encoder(column_type, encode: Callable) -> Callable[[Sequence], list]:
    """Return what encodes a whole column of ``column_type``, whose values ``encode`` encodes."""
    if isinstance(column_type, ScaledDecimal):
        return column_type.column_to_units
    return functools.partial(_each_value, encode)


def _each_value(encode: Callable, values: Sequence) -> list:
    """Return ``values`` encoded one by one, None kept."""
    try:
        return list(map(encode, values))
    except TypeError:  # a None among them
        return [None if value is None else encode(value) for value in values]


def _encoder(column_type, dialect) -> Callable | None:
    if dialect.name != "sqlite":
        return None
    if isinstance(column_type, ScaledDecimal):
        return column_type.to_units
    if isinstance(column_type, Date):
        return datetime.date.isoformat
    return None


def upsert_encoded(session: Session, codec: RowCodec, rows: Sequence[tuple],
                   key_columns: Iterable[str], keep_when_null: Iterable[str] = ()) -> None:
    """Upsert ``rows`` already in the database's representation (``RowCodec.encode``).

    Inserts into the codec's table, updating in place on a key conflict, with
    the dialect's native construct (``ON CONFLICT DO UPDATE`` on SQLite and
    PostgreSQL, ``ON DUPLICATE KEY UPDATE`` on MySQL/MariaDB), inside the
    caller's transaction. Every non-key column of the codec is updated, except
    that a null in a ``keep_when_null`` column keeps the stored value
    (``COALESCE(new, stored)``).
    """
    if not rows:
        return
    sql, positional = _upsert_sql(codec, frozenset(key_columns), frozenset(keep_when_null))
    connection = session.connection()
    if codec.dialect.driver == "pymysql":
        _upsert_written_out(connection, sql, rows)
        return
    params = rows if positional else [dict(zip(codec.columns, row)) for row in rows]
    for start in range(0, len(params), UPSERT_CHUNK_SIZE):
        connection.exec_driver_sql(sql, params[start:start + UPSERT_CHUNK_SIZE])


def _upsert_written_out(connection: Connection, sql: str, rows: Sequence[tuple]) -> None:
    """Run the upsert ``sql`` for ``rows`` with the values written into its text, as PyMySQL does.

    PyMySQL's ``executemany`` writes every value into the statement's text in
    Python, several calls per value: 0.5 s for the benchmark's 78,500 rows, a
    quarter of loading them into MariaDB. Here a column of decimals, integers
    or dates is written by C calls alone, as PyMySQL writes each of them;
    any other column value by value through PyMySQL's own ``mogrify``. Each
    statement is the text PyMySQL sends for its chunk of rows (it would split
    one over 1 MB: a chunk of prices is about 75 kB).
    """
    writer = connection.connection.cursor()  # only writes values; it runs nothing
    try:
        for start in range(0, len(rows), UPSERT_CHUNK_SIZE):
            statement = written_statement(writer, sql, rows[start:start + UPSERT_CHUNK_SIZE])
            connection.exec_driver_sql(statement, execution_options={"no_parameters": True})
    finally:
        writer.close()


def written_statement(writer, sql: str, rows: Sequence[tuple]) -> str:
    """Return ``sql`` (``INSERT ... VALUES (%s, ...) ...``) for ``rows``, values written out.

    ``writer`` is a PyMySQL cursor, whose connection writes strings as its server reads them.
    """
    prefix, postfix = _values_clause(sql)
    columns = [_literals(writer, column) for column in zip(*rows)]
    # Each row (v, ...) as its values joined: a format string's fields cost more.
    return prefix + "(" + "),(".join(map(", ".join, zip(*columns))) + ")" + postfix


@functools.lru_cache(maxsize=64)
def _values_clause(sql: str) -> tuple[str, str]:
    """Split ``INSERT ... VALUES (%s, ...) ...`` at its placeholders: the text before and after.

    As PyMySQL's ``executemany`` splits it, and with ``%%`` read as ``%`` as it reads them.
    """
    head, keyword, rest = sql.partition(" VALUES ")
    placeholders, closed, tail = rest.partition(")")
    if not keyword or not closed or not placeholders.startswith("(") or \
            set(placeholders.removeprefix("(").split(", ")) != {"%s"}:
        raise NotImplementedError("the upsert's values are not one row of %s placeholders")
    return (head + keyword) % (), tail % ()


def _literals(writer, values: Sequence) -> Sequence[str]:
    """Return ``values`` written as SQL literals, as PyMySQL writes each (``cursor.mogrify``).

    Exact types only: PyMySQL writes a bool (an int) or a datetime (a date) otherwise.
    """
    kinds = set(map(type, values))
    if kinds == {Decimal} and all(map(Decimal.is_finite, values)):
        return _plain_decimal_texts(values)
    if kinds == {int}:
        return list(map(str, values))
    if kinds == {datetime.date}:  # quoted all at once: no ISO date holds a comma
        return ("'" + "','".join(map(datetime.date.isoformat, values)) + "'").split(",")
    if kinds <= {str, type(None)}:  # a symbol: the same value on every row
        written = {value: writer.mogrify("%s", (value,)) for value in set(values)}
        return list(map(written.__getitem__, values))
    return [writer.mogrify("%s", (value,)) for value in values]


@functools.lru_cache(maxsize=64)
def _upsert_sql(codec: RowCodec, keys: frozenset[str], keep: frozenset[str]) -> tuple[str, bool]:
    """Compile the upsert of ``codec``'s columns once; return its SQL and if it is positional."""
    dialect, table = codec.dialect, codec.table
    update_names = [name for name in codec.columns if name not in keys]

    def updated(name: str, proposed):
        return func.coalesce(proposed, table.c[name]) if name in keep else proposed

    if dialect.name in ("mysql", "mariadb"):
        stmt = mysql.insert(table)
        stmt = stmt.on_duplicate_key_update(
            {name: updated(name, stmt.inserted[name]) for name in update_names})
    else:
        if dialect.name not in ("sqlite", "postgresql"):
            raise NotImplementedError(f"no upsert for the {dialect.name} dialect")
        # The database's own module only: PostgreSQL's takes a tenth of the
        # fetch job's start-up, on a database that is not PostgreSQL.
        dml = importlib.import_module(f"sqlalchemy.dialects.{dialect.name}")
        stmt = dml.insert(table)
        stmt = stmt.on_conflict_do_update(
            index_elements=sorted(keys),
            set_={name: updated(name, stmt.excluded[name]) for name in update_names})
    compiled = stmt.compile(dialect=_positional(dialect), column_keys=list(codec.columns))
    if compiled.positiontup is not None and list(compiled.positiontup) != list(codec.columns):
        raise NotImplementedError("the compiled upsert takes its parameters in another order")
    return str(compiled), compiled.positional


def _positional(dialect: Dialect) -> Dialect:
    """Return ``dialect``, or for a ``pyformat`` driver a copy compiling ``%s`` placeholders.

    Such drivers (PyMySQL, psycopg2) take ``format`` too, and render a row
    given as a tuple with less work than one given as a dict: PyMySQL spent
    a fifth less rendering the benchmark's 78,500 rows into SQL text.
    """
    if dialect.paramstyle != "pyformat":
        return dialect
    formatted = copy.copy(dialect)
    formatted.paramstyle, formatted.positional = "format", True
    return formatted
