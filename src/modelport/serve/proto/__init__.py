"""Generated KServe V2 gRPC modules (from grpc_predict_v2.proto); committed so no build step is needed."""
