# rpc-demo in a container: the binary, static (glibc), alone in the image.
# It is built on the host first, so the image needs no base and no network:
#
#   RUSTFLAGS="-C target-feature=+crt-static" cargo build --profile container -p rpc-demo --target x86_64-unknown-linux-gnu
#   docker build -t rpc-demo .
#
# Names (`binder:7000`) resolve inside it: static glibc has its `files` and
# `dns` lookups built in, and the engine provides /etc/hosts and
# /etc/resolv.conf. SIGTERM (`docker stop`) makes `serve` leave its binder
# and stop gracefully, and the binder stop.
FROM scratch
# The binary's path in the build context (.dockerignore lets only it in).
ARG BINARY=target/x86_64-unknown-linux-gnu/container/rpc-demo
COPY $BINARY /rpc-demo
# nobody: nothing here needs root.
USER 65534:65534
EXPOSE 7000 7070
ENTRYPOINT ["/rpc-demo"]
CMD ["serve", "--listen", "0.0.0.0:7070"]
