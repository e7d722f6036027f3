# Ferry's images, built on Debian bookworm from Debian's packages only. One build stage compiles
# every binary once; each final stage is a small runtime image for one service:
#   docker build -f deploy/ferry.Dockerfile --target broker  -t ferry/broker .   (ferry-broker, ferryctl)
#   docker build -f deploy/ferry.Dockerfile --target relay   -t ferry/relay .    (ferry-relay, ferryctl)
#   docker build -f deploy/ferry.Dockerfile --target example -t ferry/example .  (order-cart-demo)
# docker-compose.yml builds all three. The base image is `debian:bookworm` from a registry, or
# built offline (scripts/docker-env.sh: debootstrap + docker import) where none is reachable.
FROM debian:bookworm AS build
COPY scripts/install-deps.sh /src/scripts/install-deps.sh
RUN /src/scripts/install-deps.sh --build-only && rm -rf /var/lib/apt/lists/*
# Only what the binaries are made of: editing tests or docs does not invalidate the build cache.
COPY CMakeLists.txt /src/
COPY cmake /src/cmake
COPY proto /src/proto
COPY migrations /src/migrations
COPY services /src/services
COPY examples/order-cart /src/examples/order-cart
# The web console: npm ci from its package-lock.json (the npm registry must be reachable; behind
# an intercepting proxy, put its CA in deploy/extra-ca/, see the README there).
COPY deploy/extra-ca /etc/ferry-extra-ca
RUN cat /etc/ferry-extra-ca/*.crt >/etc/ferry-extra-ca.pem 2>/dev/null || true
ENV NODE_EXTRA_CA_CERTS=/etc/ferry-extra-ca.pem
COPY console/package.json console/package-lock.json console/build.mjs console/CMakeLists.txt /src/console/
COPY console/src /src/console/src
RUN cmake -S /src -B /build -DCMAKE_BUILD_TYPE=RelWithDebInfo -DFERRY_TESTS=OFF && \
    cmake --build /build -j"$(nproc)" --target ferry-broker ferry-relay ferryctl order-cart-demo console

# The shared libraries of the binaries (apt brings their dependencies: abseil, fmt, libpq, ...).
FROM debian:bookworm AS runtime
RUN apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      libgrpc++1.51 libprotobuf32 libpqxx-6.4 libspdlog1.10 libcpp-httplib0.11 libssl3 zlib1g && \
    rm -rf /var/lib/apt/lists/* && useradd --system --no-create-home ferry
USER ferry

FROM runtime AS broker
COPY --from=build /build/bin/ferry-broker /build/bin/ferryctl /usr/local/bin/
COPY --from=build /build/console /usr/local/share/ferry/console
ENV FERRY_LISTEN=0.0.0.0:7420
EXPOSE 7420 7480 9420
HEALTHCHECK --interval=5s --timeout=3s CMD ["/usr/local/bin/ferryctl", "health"]
ENTRYPOINT ["/usr/local/bin/ferry-broker"]

FROM runtime AS relay
COPY --from=build /build/bin/ferry-relay /build/bin/ferryctl /usr/local/bin/
EXPOSE 9422
ENTRYPOINT ["/usr/local/bin/ferry-relay"]

FROM runtime AS example
COPY --from=build /build/bin/order-cart-demo /build/bin/ferryctl /usr/local/bin/
ENTRYPOINT ["/usr/local/bin/order-cart-demo"]
