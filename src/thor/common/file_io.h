// Durable file writes: a file appears under its name whole or not at all, and survives a
// crash or power loss once the call returns (written to NAME.tmp, fsync'ed, renamed over
// NAME, the directory fsync'ed).
#pragma once
#include <string>
#include <string_view>

namespace thor {

// Throws Error naming the file and the system's reason (e.g. "No space left on device");
// on failure NAME is left as it was and NAME.tmp is removed.
void write_file_durably(const std::string& path, std::string_view bytes);

}  // namespace thor
