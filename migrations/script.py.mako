<%!
import re

# Autogenerate frames its commands in "please adjust!" comments; the project's
# revisions carry none.
ALEMBIC_BANNER = re.compile(r"\s*# ### .* ###$")


def body(commands):
    """Give upgrade()'s or downgrade()'s body: the commands without Alembic's banners."""
    kept = [line for line in (commands or "").splitlines() if not ALEMBIC_BANNER.match(line)]
    return "\n".join(kept).strip() or "pass"


def import_block(imports, *bodies):
    """Import what the bodies use (op, sa, autogenerate's own), sorted as isort does."""
    code = "\n".join(bodies)
    lines = set((imports or "").splitlines()) - {""}
    if re.search(r"\bsa\.", code):
        lines.add("import sqlalchemy as sa")
    if re.search(r"\bop\.", code):
        lines.add("from alembic import op")
    return "\n".join(sorted(lines, key=lambda line: (line.startswith("from "), line)))


def literal(value):
    """Write a revision, label or tuple of them in double quotes, as the project does."""
    return repr(value).replace("'", '"')
%><%
    upgrade_body = body(upgrades)
    downgrade_body = body(downgrades)
    imported = import_block(imports, upgrade_body, downgrade_body)
%>"""${message}

Revision ID: ${up_revision}
Revises: ${down_revision | comma,n}
Create Date: ${create_date.date()}
"""
% if imported:
${imported}

% endif
revision = ${literal(up_revision)}
down_revision = ${literal(down_revision)}
branch_labels = ${literal(branch_labels)}
depends_on = ${literal(depends_on)}


def upgrade():
    ${upgrade_body}


def downgrade():
    ${downgrade_body}
