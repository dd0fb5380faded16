# The Tributary broker image. Nothing is pulled: the build context is a root filesystem that
# scripts/build-image.sh assembles from the compiled binary, the shared libraries `ldd` lists,
# and an /etc/passwd with the non-root user `tributary` (10001).
#
#   scripts/build-image.sh broker [BINARY]   # default target/debug/broker
FROM scratch
COPY rootfs/ /
# COPY makes files root-owned; the user's writable home is the one exception.
COPY --chown=10001:10001 home/ /var/lib/tributary/
USER 10001:10001
WORKDIR /var/lib/tributary
EXPOSE 9092 9093 9644
VOLUME ["/var/lib/tributary"]
ENTRYPOINT ["/usr/local/bin/broker"]
# Container-friendly defaults for `docker run`; Kubernetes pods replace these args with
# `--config /etc/tributary/<pod>.properties` (the operator renders those files).
CMD ["--override", "listeners=PLAINTEXT://0.0.0.0:9092", \
     "--override", "http.listener=0.0.0.0:9644", \
     "--override", "log.dirs=/var/lib/tributary/data"]
