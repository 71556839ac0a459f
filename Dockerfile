# Carepath: the FHIR care-pathway service on port 8080. Configuration comes from the environment
# (CAREPATH_*, DATABASE_URL, FHIR_SERVER_URL); nothing secret is baked into the image.
#
#   docker build -t carepath .
#   docker run --rm -p 8080:8080 -e CAREPATH_API_TOKENS=change-me \
#       -v carepath-data:/var/lib/carepath carepath   # SQLite in the volume
#   (PostgreSQL: add -e DATABASE_URL=postgresql://user:password@host:5432/carepath)

FROM python:3.11.10-slim-bookworm AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY service ./service
# Dependencies only: the source is copied as-is below (alembic's migration files are not packaged).
RUN python -m venv /opt/carepath && /opt/carepath/bin/pip install --no-compile . \
    && /opt/carepath/bin/pip uninstall --yes carepath pip

FROM python:3.11.10-slim-bookworm
ENV PATH=/opt/carepath/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    CAREPATH_HOST=0.0.0.0 \
    CAREPATH_PORT=8080 \
    PYTHONPATH=/app \
    CAREPATH_PATHWAYS_DIR=/app/pathways \
    DATABASE_URL=sqlite+aiosqlite:////var/lib/carepath/carepath.db
RUN groupadd --system --gid 10001 carepath \
    && useradd --system --uid 10001 --gid carepath --home-dir /app --shell /usr/sbin/nologin carepath \
    && mkdir -p /var/lib/carepath && chown carepath:carepath /var/lib/carepath
WORKDIR /app
COPY --from=build /opt/carepath /opt/carepath
COPY service ./service
COPY pathways ./pathways
USER 10001:10001
VOLUME ["/var/lib/carepath"]
EXPOSE 8080
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen(f\"http://127.0.0.1:{os.environ.get('CAREPATH_PORT', '8080')}/fhir/metadata\", timeout=4)"]
CMD ["python", "-m", "service.entrypoints.cli", "serve"]
