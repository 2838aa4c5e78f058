// The router registry: one line per router (CTranslate2-style table, unknown name throws).
#include <functional>
#include <map>

#include "thor/common/error.h"
#include "thor/moe/router_alf.h"
#include "thor/moe/router_gshard.h"
#include "thor/moe/router_hash.h"
#include "thor/moe/router_random.h"
#include "thor/moe/router_switch.h"
#include "thor/moe/router_thor.h"

namespace thor {

namespace {
using Factory = std::function<std::shared_ptr<RouterImpl>(const ModelConfig&)>;
const std::map<std::string, Factory>& registry() {
  static const std::map<std::string, Factory> table = {
      {"thor", [](const ModelConfig& c) { return std::make_shared<ThorRouterImpl>(c); }},
      {"random", [](const ModelConfig& c) { return std::make_shared<RandomRouterImpl>(c); }},
      {"switch", [](const ModelConfig& c) { return std::make_shared<SwitchRouterImpl>(c); }},
      {"gshard", [](const ModelConfig& c) { return std::make_shared<GShardRouterImpl>(c); }},
      {"hash", [](const ModelConfig& c) { return std::make_shared<HashRouterImpl>(c); }},
      {"alf", [](const ModelConfig& c) { return std::make_shared<AlfRouterImpl>(c); }},
  };
  return table;
}
}  // namespace

std::shared_ptr<RouterImpl> make_router(const ModelConfig& cfg) {
  auto it = registry().find(cfg.router);
  if (it == registry().end()) {
    std::string known;
    for (auto& kv : registry()) known += (known.empty() ? "" : ", ") + kv.first;
    throw Error("--router: unknown router '" + cfg.router + "' (known: " + known + ")");
  }
  return it->second(cfg);
}

std::vector<std::string> router_names() {
  std::vector<std::string> v;
  for (auto& kv : registry()) v.push_back(kv.first);
  return v;
}

}  // namespace thor
