#include "probes/line_framer.h"

namespace mailprobe {

std::optional<LineFramer::Line> LineFramer::tooLong() {
  error_ = "line longer than " + std::to_string(max_line_) + " bytes";
  return std::nullopt;
}

std::optional<LineFramer::Line> LineFramer::take(std::string_view& bytes) {
  if (!error_.empty()) {
    return std::nullopt;
  }
  size_t lf = bytes.find('\n');
  size_t take = lf == std::string_view::npos ? bytes.size() : lf;
  // The line may still end in a CR before its LF, hence the + 1.
  if (partial_.size() + take > max_line_ + 1) {
    return tooLong();
  }
  partial_.append(bytes.substr(0, take));
  if (lf == std::string_view::npos) {
    bytes = {};
    return std::nullopt;
  }
  bytes.remove_prefix(lf + 1);
  size_t raw_size = partial_.size() + 1;
  if (!partial_.empty() && partial_.back() == '\r') {
    partial_.pop_back();
  }
  if (partial_.size() > max_line_) {
    return tooLong();
  }
  line_.swap(partial_);
  partial_.clear();
  return Line{line_, raw_size};
}

void LineFramer::clear() {
  partial_.clear();
  partial_.shrink_to_fit();
  line_.clear();
  line_.shrink_to_fit();
}

}  // namespace mailprobe
