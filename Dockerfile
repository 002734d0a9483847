# ML Control Tower image: build the virtualenv in one stage, run as a non-root user in the next.
# Configuration comes from the environment (see README, "Configuration"); secrets are mounted at
# run time (e.g. /app/.streamlit/secrets.toml), never baked in.

FROM python:3.11.7-slim-bookworm AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
COPY requirements.txt /tmp/requirements.txt
RUN /opt/venv/bin/pip install -r /tmp/requirements.txt
# The `tower` command, for scheduled jobs in this image (`tower monitor run`, `tower audit verify`).
# Editable from /app: it runs the very services/ the runtime stage copies there for the app, and finds
# /app/tower.yaml and /app/.streamlit/secrets.toml as the app does (a copy in site-packages would look
# for them beside itself). Only the finder and the script land in /opt/venv; /app here is discarded.
COPY pyproject.toml requirements.txt /app/
COPY services /app/services
RUN /opt/venv/bin/pip install --no-deps -e /app

FROM python:3.11.7-slim-bookworm AS runtime
RUN useradd --create-home --uid 10001 tower
COPY --from=build /opt/venv /opt/venv
WORKDIR /app
COPY --chown=tower:tower app.py tower.yaml ./
COPY --chown=tower:tower app_pages ./app_pages
COPY --chown=tower:tower ui ./ui
COPY --chown=tower:tower services ./services
COPY --chown=tower:tower .streamlit/config.toml ./.streamlit/config.toml
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    MLFLOW_DISABLE_TELEMETRY=true \
    TOWER_DATA_DIR=/data
RUN mkdir /data && chown tower:tower /data
USER tower
EXPOSE 8501
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD python -c "import urllib.request,sys; sys.exit(urllib.request.urlopen('http://127.0.0.1:8501/_stcore/health', timeout=4).status != 200)"
CMD ["streamlit", "run", "app.py", "--server.port=8501", "--server.address=0.0.0.0", "--server.headless=true"]
