# Template for the workerd anchor. bench/lib.py (write_workerd_config) copies it,
# with hello.js, into a temp dir and replaces {{ADDRESS}} with 127.0.0.1:<free port>.
# To run it by hand without the harness, override the socket address instead:
#   node_modules/.bin/workerd serve workerd/config.capnp --socket-addr http=127.0.0.1:8081
using Workerd = import "/workerd/workerd.capnp";

const config :Workerd.Config = (
  services = [ (name = "main", worker = .helloWorker) ],
  sockets = [ ( name = "http", address = "{{ADDRESS}}", http = (), service = "main" ) ]
);

const helloWorker :Workerd.Worker = (
  modules = [ (name = "worker", esModule = embed "hello.js") ],
  compatibilityDate = "2024-01-01",
);
