# The report-operator image: the release binary on distroless (glibc, CA certificates, no
# shell), running as the non-root user 65532. The Helm chart's default image is built from
# this file: docker build -t ghcr.io/report-operator/report-operator:0.1.0 .
# hack/image.sh builds the same image without Docker, as an OCI archive (README "Image");
# tests/image.rs checks that both say the same user, entrypoint, command, port and labels.

FROM rust:1-bookworm AS build
WORKDIR /src
# The simulators (sim/) are a member of the Cargo workspace, so cargo needs them to load the
# workspace and check the lockfile; only the operator's binary is built and shipped.
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY sim ./sim
RUN cargo build --release --locked --bin report-operator \
 && cp target/release/report-operator /report-operator

FROM gcr.io/distroless/cc-debian12:nonroot
LABEL org.opencontainers.image.source="https://github.com/report-operator/report-operator" \
      org.opencontainers.image.version="0.1.0" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.title="report-operator"
COPY --from=build /report-operator /report-operator
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/report-operator"]
CMD ["run"]
