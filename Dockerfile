FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
WORKDIR /srv/tokenledger
COPY pyproject.toml README.md ./
COPY app ./app
COPY ledger ./ledger
COPY projections ./projections
COPY migrations ./migrations
COPY deploy ./deploy
RUN pip install . && useradd --system --uid 10001 tokenledger
USER tokenledger

EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=3s --retries=3 \
  CMD python -c "import urllib.request,sys; sys.exit(urllib.request.urlopen('http://127.0.0.1:8000/readyz').status != 200)"
# SIGTERM drains in-flight requests, then exits. Alone this migrates first (owner role);
# compose.yaml migrates once and runs the replicas with `serve --no-migrate`.
STOPSIGNAL SIGTERM
CMD ["tokenledger", "serve", "--host", "0.0.0.0", "--port", "8000"]
