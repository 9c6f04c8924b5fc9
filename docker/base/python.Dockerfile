# Stand-in for python:3.11-slim-bookworm on hosts that reach no image registry (make images-offline):
# Debian bookworm's own Python 3.11 on the local Debian base, with `python` on PATH like the
# official image. The services' Dockerfiles install into their own virtualenv either way.
ARG BASE_IMAGE=debian:bookworm-slim
FROM ${BASE_IMAGE}
ENV LANG=C.UTF-8
RUN apt-get update -qq \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
      python3.11 python3.11-venv ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && ln -s /usr/bin/python3.11 /usr/local/bin/python
CMD ["python"]
