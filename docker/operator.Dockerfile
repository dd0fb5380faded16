# The Tributary operator image, built FROM scratch like the broker's (see
# scripts/build-image.sh): the binary, its shared libraries, a non-root user. It talks TLS to
# the API server with rustls and the service account's CA bundle, so no system CA store is needed.
#
#   scripts/build-image.sh operator [BINARY]   # default target/debug/operator
FROM scratch
COPY rootfs/ /
# COPY makes files root-owned; the user's writable home is the one exception.
COPY --chown=10001:10001 home/ /home/tributary/
USER 10001:10001
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/operator"]
