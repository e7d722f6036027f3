# ferry-broker and ferryctl, built and run on Debian bookworm with Debian's packages only.
# Build from the repository root: docker build -f deploy/broker.Dockerfile -t ferry/broker .
FROM debian:bookworm AS build
COPY scripts/install-deps.sh /src/scripts/install-deps.sh
RUN /src/scripts/install-deps.sh
COPY . /src
RUN cmake -S /src -B /build -DCMAKE_BUILD_TYPE=RelWithDebInfo && \
    cmake --build /build -j"$(nproc)" --target ferry-broker ferryctl

FROM debian:bookworm
RUN apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      libgrpc++1.51 libprotobuf32 libpqxx-6.4 libspdlog1.10 libssl3 zlib1g && \
    rm -rf /var/lib/apt/lists/* && useradd --system --no-create-home ferry
COPY --from=build /build/bin/ferry-broker /build/bin/ferryctl /usr/local/bin/
USER ferry
ENV FERRY_LISTEN=0.0.0.0:7420
EXPOSE 7420
ENTRYPOINT ["/usr/local/bin/ferry-broker"]
