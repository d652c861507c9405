# civetweb's C++ server (CivetServer) for daemon/http_server.cpp.
# prometheus-cpp::pull is a shared library that links civetweb privately, so civetweb does not
# reach mailprobe_daemon transitively. prometheus-cpp's package config has already run
# find_dependency(civetweb); asking again is a no-op that keeps this file standalone.
find_package(civetweb CONFIG REQUIRED)
target_link_libraries(mailprobe_daemon PUBLIC civetweb::civetweb-cpp)
