# Coffer in a FROM-scratch image: one static binary (CGO_ENABLED=0, time
# zones embedded), no shell, no package manager. Build it with `make docker`,
# which compiles bin/coffer first: no base image is pulled.
FROM scratch
COPY bin/coffer /coffer
EXPOSE 7700 7701 7702 7702/udp
VOLUME ["/data"]
ENTRYPOINT ["/coffer"]
CMD ["server", "-h"]
