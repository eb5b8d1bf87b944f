# registry-mirror as a container image.
#
#   docker build -t registry-mirror .
#   docker run -d -p 5000:5000 -v mirror-data:/data registry-mirror
#
# serves a Docker Hub mirror on port 5000 with its data in the volume. The
# config is /etc/registry-mirror/mirror.config.yml (deploy/docker/mirror.config.yml):
# mount another file there, or point MIRROR_CONFIG elsewhere; the per-deployment
# keys also come from MIRROR_* variables (README: Configuration reference).
#
# The base images are arguments, so a mirror of them or a locally made one can
# stand in: BUILD_IMAGE needs node >= 20.8 with npm, python3, make and g++
# (better-sqlite3 is compiled when no prebuilt binary can be downloaded);
# RUNTIME_IMAGE needs node only, with the same Node ABI as BUILD_IMAGE.
ARG BUILD_IMAGE=node:20-bookworm
ARG RUNTIME_IMAGE=node:20-bookworm-slim

FROM ${BUILD_IMAGE} AS build
WORKDIR /src
COPY package.json package-lock.json ./
# No lifecycle scripts but better-sqlite3's own build: `prepare` (tsc) needs the sources,
# which come after so that a change to them does not repeat the install. The node
# headers are taken from the node installation itself, so node-gyp downloads nothing.
RUN npm ci --ignore-scripts --no-audit --no-fund \
 && npm_config_nodedir="$(dirname "$(dirname "$(readlink -f "$(command -v node)")")")" npm rebuild better-sqlite3 \
 && rm -rf node_modules/better-sqlite3/build/Release/obj* node_modules/better-sqlite3/deps node_modules/better-sqlite3/src
COPY tsconfig.json ./
COPY src ./src
RUN npx tsc -p tsconfig.json && npm prune --omit=dev --ignore-scripts --no-audit --no-fund

FROM ${RUNTIME_IMAGE}
# A fixed non-root uid/gid (files in the volume belong to it), written directly
# so that the base image needs no useradd.
RUN echo 'mirror:x:10001:10001:registry-mirror:/data:/usr/sbin/nologin' >> /etc/passwd \
 && echo 'mirror:x:10001:' >> /etc/group \
 && mkdir -p /data /etc/registry-mirror \
 && chown 10001:10001 /data
WORKDIR /app
COPY --from=build /src/package.json ./
COPY --from=build /src/node_modules ./node_modules
COPY --from=build /src/dist ./dist
COPY deploy/docker/mirror.config.yml /etc/registry-mirror/mirror.config.yml
ENV NODE_ENV=production \
    MIRROR_CONFIG=/etc/registry-mirror/mirror.config.yml
USER 10001:10001
VOLUME /data
EXPOSE 5000
# No curl in slim images: the mirror's own `healthcheck` command asks /healthz at
# the configured listen address.
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
  CMD ["node", "/app/dist/main.js", "healthcheck"]
# node as PID 1 handles SIGTERM itself (src/cli/serve.ts): `docker stop` drains and exits 0.
ENTRYPOINT ["node", "/app/dist/main.js"]
CMD ["serve"]
