#include "proxy/sys.h"

#include <unistd.h>

namespace mproxy::proxy {

void UniqueFd::Reset(int fd) {
  // close() errors on a descriptor we own cannot be acted upon (the fd is gone either way).
  if (fd_ >= 0) ::close(fd_);
  fd_ = fd;
}

}  // namespace mproxy::proxy
