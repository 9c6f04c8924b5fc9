# Stand-in for eclipse-temurin:17-jre on hosts that reach no image registry (make images-offline):
# Debian bookworm's OpenJDK 17 runtime, the JDK the local stack runs HBase on.
ARG BASE_IMAGE=debian:bookworm-slim
FROM ${BASE_IMAGE}
ENV LANG=C.UTF-8
RUN apt-get update -qq \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
      openjdk-17-jre-headless ca-certificates \
 && rm -rf /var/lib/apt/lists/*
