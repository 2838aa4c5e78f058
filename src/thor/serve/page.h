// The page GET / serves: a self-contained HTML form to try the model in a browser (no
// external requests: inline style and script). It calls GET /languages and POST /translate.
// For scripted checks, /?q=TEXT&auto=1 fills the box and translates on load.
#pragma once

namespace thor::serve {

extern const char* const kPage;

}  // namespace thor::serve
