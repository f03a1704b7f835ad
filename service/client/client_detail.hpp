// Defines sluice::client::detail, what the client's sources share: the
// text of a failed connection.
#ifndef SLUICE_SERVICE_CLIENT_CLIENT_DETAIL_HPP_
#define SLUICE_SERVICE_CLIENT_CLIENT_DETAIL_HPP_

#include <boost/system/error_code.hpp>
#include <string>
#include <string_view>

#include "service/client/client.hpp"

namespace sluice::client::detail {

// "<what> host:port: <system error>", e.g. "cannot connect to
// 127.0.0.1:9: Connection refused"; a Beast timeout says "timed out after
// 30s" (server.timeout). Pure.
std::string Failure(const Server& server, std::string_view what,
                    const boost::system::error_code& ec);

}  // namespace sluice::client::detail

#endif  // SLUICE_SERVICE_CLIENT_CLIENT_DETAIL_HPP_
