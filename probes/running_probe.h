#pragma once
// What the scheduler holds of a probe run in flight: something it can cancel. EndpointProbe and
// RelayProbe are both owned by the loop and end themselves; cancel() ends one without its
// completion callback.

namespace mailprobe {

class RunningProbe {
 public:
  virtual void cancel() = 0;

 protected:
  ~RunningProbe() = default;
};

}  // namespace mailprobe
