# routilux-daemon image: slim Python, non-root, state on a volume, signals to PID 1.
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY routilux ./routilux
COPY daemon ./daemon
RUN python -m venv /opt/routilux \
 && /opt/routilux/bin/pip install --no-cache-dir --upgrade pip \
 && /opt/routilux/bin/pip install --no-cache-dir .

FROM python:3.11-slim
RUN useradd --system --uid 10001 --home-dir /var/lib/routilux --create-home routilux
COPY --from=build /opt/routilux /opt/routilux
COPY config/ /etc/routilux/
COPY examples/ /opt/routilux-app/examples/
ENV PATH=/opt/routilux/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONPATH=/opt/routilux-app \
    ROUTILUX_STORE__PATH=/var/lib/routilux/routilux.db \
    ROUTILUX_FLOWS__PATHS='["/etc/routilux/flows"]' \
    ROUTILUX_METRICS__HOST=0.0.0.0
USER routilux
WORKDIR /var/lib/routilux
VOLUME ["/var/lib/routilux"]
EXPOSE 9464
HEALTHCHECK --interval=15s --timeout=3s --start-period=20s --retries=3 \
  CMD python -c "import urllib.request,sys; urllib.request.urlopen('http://127.0.0.1:9464/healthz', timeout=2); sys.exit(0)"
STOPSIGNAL SIGTERM
# exec form: the daemon is PID 1 and receives SIGTERM itself (it drains, then exits 0)
ENTRYPOINT ["routilux-daemon"]
CMD ["run", "--config", "/etc/routilux/daemon.toml"]
