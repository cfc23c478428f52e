// A C++17 consumer of the installed headers (tests/install.rs builds it with CMake and with
// pkg-config): a full backup of an emulated CA with RAII owners for the CA, the backup
// session and the returned lists, then the CA's conformance report.
#include <certbcli.h>
#include <certemu.h>

#include <cstddef>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

namespace {

struct CaDeleter {
    void operator()(certemu_ca *ca) const noexcept { certemu_ca_destroy(ca); }
};
struct ListDeleter {
    void operator()(WCHAR *list) const noexcept { CertSrvBackupFree(list); }
};
struct StringDeleter {
    void operator()(char *s) const noexcept { certemu_free_string(s); }
};
using Ca = std::unique_ptr<certemu_ca, CaDeleter>;
using List = std::unique_ptr<WCHAR, ListDeleter>;
using String = std::unique_ptr<char, StringDeleter>;

// A full backup session: Prepare in the constructor, End in the destructor.
class Session {
public:
    explicit Session(const WCHAR *server)
        : hr_(CertSrvBackupPrepareW(server, 0, CSBACKUP_TYPE_FULL, &h_)) {}
    ~Session() {
        if (h_) CertSrvBackupEnd(h_);
    }
    Session(const Session &) = delete;
    Session &operator=(const Session &) = delete;
    HRESULT status() const { return hr_; }
    HCSBC handle() const { return h_; }

private:
    HCSBC h_ = nullptr;
    HRESULT hr_;
};

// The entries of a double-NUL list ("<CSBFT char><name>" each).
std::vector<std::u16string> entries(const WCHAR *list) {
    std::vector<std::u16string> out;
    for (const WCHAR *p = list; p && *p; p += out.back().size() + 1) out.emplace_back(p);
    return out;
}

// Opens, reads to the end (a short read is the end) and closes one listed file.
HRESULT copy(HCSBC h, const std::u16string &entry, unsigned long long &bytes) {
    LARGE_INTEGER size;
    HRESULT hr = CertSrvBackupOpenFileW(h, entry.c_str() + 1, 0, &size); // strip the CSBFT
    if (FAILED(hr)) return hr;
    std::vector<unsigned char> buf(256 * 1024);
    DWORD n = 0;
    do {
        hr = CertSrvBackupRead(h, buf.data(), static_cast<DWORD>(buf.size()), &n);
        bytes += n;
    } while (SUCCEEDED(hr) && n == buf.size());
    CertSrvBackupClose(h);
    return hr;
}

// Calls get(handle, &list, &cb) and copies every file of the list.
template <typename Get>
HRESULT copy_list(HCSBC h, Get get, List &list, std::size_t &files, unsigned long long &bytes) {
    WCHAR *raw = nullptr;
    DWORD cb = 0;
    HRESULT hr = get(h, &raw, &cb);
    list.reset(raw);
    for (const auto &e : entries(list.get())) {
        if (FAILED(hr)) break;
        hr = copy(h, e, bytes);
        ++files;
    }
    return hr;
}

} // namespace

int main() {
    certemu_ca *raw_ca = nullptr;
    if (FAILED(certemu_ca_create(nullptr, nullptr, &raw_ca))) return 1;
    Ca ca(raw_ca);
    const WCHAR *server = nullptr;
    certemu_ca_server_name_w(ca.get(), &server);

    HRESULT hr;
    std::size_t files = 0;
    unsigned long long bytes = 0;
    {
        Session session(server);
        List locations, databases, logs;
        hr = session.status();
        if (SUCCEEDED(hr)) {
            WCHAR *raw = nullptr;
            DWORD cb = 0;
            hr = CertSrvRestoreGetDatabaseLocationsW(session.handle(), &raw, &cb);
            locations.reset(raw);
        }
        if (SUCCEEDED(hr))
            hr = copy_list(session.handle(), CertSrvBackupGetDatabaseNamesW, databases, files,
                           bytes);
        if (SUCCEEDED(hr))
            hr = copy_list(session.handle(), CertSrvBackupGetBackupLogsW, logs, files, bytes);
        if (SUCCEEDED(hr)) hr = CertSrvBackupTruncateLogs(session.handle());
    } // the lists are freed, then the session ends
    std::printf("c++ backup: hr=0x%08x, %zu files, %llu bytes\n", static_cast<unsigned>(hr),
                files, bytes);

    char *raw_report = nullptr;
    certemu_ca_report(ca.get(), &raw_report);
    String report(raw_report);
    std::printf("%s\n", report ? report.get() : "(no report)");
    return FAILED(hr) ? 1 : 0;
}
