// The peer for Tools/bench-rpc: eduhub.node.v1.NodeService/Ping served by the gRPC C++ library
// (Debian's libgrpc++-dev) with its callback API, the one gRPC recommends for performance.
// Usage: echo_server PORT
#include <cstdlib>
#include <iostream>
#include <memory>
#include <string>

#include <grpcpp/grpcpp.h>

#include "eduhub/node/v1/node.grpc.pb.h"

namespace {

class NodeServiceImpl final : public eduhub::node::v1::NodeService::CallbackService {
  grpc::ServerUnaryReactor* Ping(grpc::CallbackServerContext* context,
                                 const eduhub::node::v1::PingRequest* request,
                                 eduhub::node::v1::PingResponse* response) override {
    response->set_payload(request->payload());
    auto* reactor = context->DefaultReactor();
    reactor->Finish(grpc::Status::OK);
    return reactor;
  }

  grpc::ServerUnaryReactor* Info(grpc::CallbackServerContext* context,
                                 const eduhub::node::v1::InfoRequest*,
                                 eduhub::node::v1::InfoResponse* response) override {
    response->set_node_id("cpp-echo");
    auto* reactor = context->DefaultReactor();
    reactor->Finish(grpc::Status::OK);
    return reactor;
  }
};

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::cerr << "usage: echo_server PORT\n";
    return 2;
  }
  std::string address = std::string("127.0.0.1:") + argv[1];
  NodeServiceImpl service;
  grpc::ServerBuilder builder;
  builder.AddListeningPort(address, grpc::InsecureServerCredentials());
  builder.RegisterService(&service);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (!server) {
    std::cerr << "echo_server: cannot listen on " << address << "\n";
    return 1;
  }
  std::cout << "listening on " << address << std::endl;
  server->Wait();
  return 0;
}
