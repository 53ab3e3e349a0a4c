-- Argo CD health of a Tailor PersonalizationStack: the argocd-cm key
-- resource.customizations.health.tailor.dev_PersonalizationStack (docs/gitops.md).
-- It reads what the operator writes (operator/tailor_operator/reconcile/stack_status.py): Ready from
-- Reconciled, WorkersReady, ContentApiReady, RedisReady and RulesetPublished, each condition with the
-- generation it describes, and ReconciliationPaused while the pause annotation is set.
local hs = {}

local function condition(conditions, kind)
  for _, c in ipairs(conditions or {}) do
    if c.type == kind then
      return c
    end
  end
  return nil
end

local generation = obj.metadata.generation
local status = obj.status
if status == nil or status.conditions == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the Tailor operator to report on the stack"
  return hs
end

local paused = condition(status.conditions, "ReconciliationPaused")
if paused ~= nil and paused.status == "True" then
  hs.status = "Suspended"
  hs.message = paused.message
  return hs
end

local ready = condition(status.conditions, "Ready")
local seen = status.observedGeneration
if ready ~= nil and ready.observedGeneration ~= nil and (seen == nil or ready.observedGeneration < seen) then
  seen = ready.observedGeneration
end
if generation ~= nil and (seen == nil or seen < generation) then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to act on generation " .. generation
  return hs
end
if ready == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the Ready condition"
  return hs
end
if ready.status == "True" then
  hs.status = "Healthy"
  hs.message = ready.message
  return hs
end

-- Not ready: still on its way (pods rolling out, a first ruleset to publish), or failed.
local waiting = { Progressing = true, Reconciling = true, Pending = true }
if waiting[ready.reason] then
  hs.status = "Progressing"
  hs.message = ready.message
  return hs
end
-- A managed Redis that is not up yet cannot take the ruleset: the publisher retries.
local redis = condition(status.conditions, "RedisReady")
local managed = obj.spec ~= nil and obj.spec.redis ~= nil and obj.spec.redis.managed == true
if ready.reason == "RedisUnavailable" and managed and (redis == nil or redis.status ~= "True") then
  hs.status = "Progressing"
  hs.message = ready.message
  return hs
end
hs.status = "Degraded"
hs.message = ready.message
return hs
