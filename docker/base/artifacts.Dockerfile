# An image that only carries files the host already built (make images-offline): the build
# context is that folder, copied to ARTIFACT_PATH. The service Dockerfiles take such an image as
# their build stage (WHEELS_IMAGE, MINIO_BUILD_IMAGE, HBASE_JARS_IMAGE) and skip the download or
# compile step when the files are already there.
ARG BASE_IMAGE=debian:bookworm-slim
FROM ${BASE_IMAGE}
ARG ARTIFACT_PATH
COPY . ${ARTIFACT_PATH}
