// The dashboard (GET /, DESIGN.md §3.8): the page's bytes, embedded in the
// binary from service/http/dashboard/index.html at build time, and the
// Content-Security-Policy it is served with.
#ifndef SLUICE_SERVICE_HTTP_DASHBOARD_HPP_
#define SLUICE_SERVICE_HTTP_DASHBOARD_HPP_

#include <string>
#include <string_view>

namespace sluice::http {

// The page, byte for byte as in service/http/dashboard/index.html (the
// generated dashboard_page.cpp). Never fails; valid for the whole process.
std::string_view DashboardPage();

// The Content-Security-Policy of the page: nothing but this origin
// (default-src 'self', connect-src 'self' ws: wss:), and of inline code
// only the page's own <script> and <style> elements, allowed by their
// sha256 (so no 'unsafe-inline'). Computed from `page` (elements written
// exactly "<script>" / "<style>", without attributes). Never fails but for
// allocation failure. Thread-safe (a pure function).
std::string ContentSecurityPolicyFor(std::string_view page);

// ContentSecurityPolicyFor(DashboardPage()), computed once. Thread-safe.
const std::string& DashboardCsp();

}  // namespace sluice::http

#endif  // SLUICE_SERVICE_HTTP_DASHBOARD_HPP_
