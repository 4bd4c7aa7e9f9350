// Command keptn-conformance plays the Keptn control plane against keptn-gitops-service, using only the
// types and helpers of keptn/go-utils (the library the shipyard-controller, the distributor and every Go
// Keptn service are built on).
//
// It publishes a task ".triggered" event on NATS exactly as the shipyard-controller does (a cloudevents
// sdk-go Event marshalled as structured JSON, NATS subject = event type), listens for the ".started" and
// ".finished" replies, decodes them with go-utils and checks everything the shipyard-controller relies on
// plus the helm-service-compatible payload.
//
// It prints a JSON summary on stdout. Every failed check is also printed on stderr as "FAIL <name>: <detail>".
// Exit status: 0 when all checks pass, 1 when any fails, 2 on a usage or setup error.
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"net/url"
	"os"
	"runtime/debug"
	"sort"
	"strings"
	"time"

	cloudevents "github.com/cloudevents/sdk-go/v2"
	"github.com/google/uuid"
	"github.com/keptn/go-utils/pkg/api/models"
	keptn "github.com/keptn/go-utils/pkg/lib"
	keptnv2 "github.com/keptn/go-utils/pkg/lib/v0_2_0"
	"github.com/nats-io/nats.go"
)

// The values the shipyard-controller puts on every task event it sends
// [keptn:shipyard-controller/internal/common/keptn_helpers.go CreateEventWithPayload].
const (
	shipyardSource     = "shipyard-controller"
	keptnSpecVersion   = "0.2.4"
	extContext         = "shkeptncontext"
	extSpecVersion     = "shkeptnspecversion"
	extTriggeredID     = "triggeredid"
	extGitCommitID     = "gitcommitid"
	defaultGitCommitID = "3f1c9b0e2d4a5b6c7d8e9f00112233445566778a"
)

var statusTypes = []keptnv2.StatusType{
	keptnv2.StatusSucceeded, keptnv2.StatusErrored, keptnv2.StatusUnknown, keptnv2.StatusAborted,
}

var resultTypes = []keptnv2.ResultType{keptnv2.ResultPass, keptnv2.ResultWarning, keptnv2.ResultFailed}

type options struct {
	natsURL        string
	scenario       string
	timeout        time.Duration
	settle         time.Duration
	project        string
	stage          string
	service        string
	image          string
	strategy       string
	incomingResult string
	expectStatus   string
	expectResult   string
	triggeredID    string
	keptnContext   string
	gitCommitID    string
	labels         map[string]string
}

type check struct {
	Name   string `json:"name"`
	OK     bool   `json:"ok"`
	Detail string `json:"detail,omitempty"`
}

// reply is one event received on a reply subject, as the shipyard-controller would see it.
type reply struct {
	Subject string                 `json:"subject"`
	Arrival int                    `json:"arrival"`
	Raw     map[string]interface{} `json:"-"`
	ID      string                 `json:"id"`
	Type    string                 `json:"type"`
	Source  string                 `json:"source"`
	Time    string                 `json:"time"`
	Context string                 `json:"shkeptncontext"`
	Trigger string                 `json:"triggeredid"`
	SpecVer string                 `json:"shkeptnspecversion"`
	Data    map[string]interface{} `json:"data"`
	body    []byte
}

type deploymentSummary struct {
	DeploymentStrategy       string   `json:"deploymentstrategy"`
	ParsedDeploymentStrategy string   `json:"parsedDeploymentStrategy"`
	DeploymentNames          []string `json:"deploymentNames"`
	DeploymentURIsLocal      []string `json:"deploymentURIsLocal"`
	DeploymentURIsPublic     []string `json:"deploymentURIsPublic,omitempty"`
	GitCommit                string   `json:"gitCommit,omitempty"`
}

type summary struct {
	OK         bool                   `json:"ok"`
	Scenario   string                 `json:"scenario"`
	GoUtils    string                 `json:"goUtils"`
	Triggered  map[string]interface{} `json:"triggered"`
	Started    *reply                 `json:"started"`
	Finished   *reply                 `json:"finished"`
	Status     string                 `json:"status,omitempty"`
	Result     string                 `json:"result,omitempty"`
	Message    string                 `json:"message,omitempty"`
	Deployment *deploymentSummary     `json:"deployment,omitempty"`
	Replies    int                    `json:"replies"`
	ElapsedMS  int64                  `json:"elapsedMs"`
	Checks     []check                `json:"checks"`
	Failed     []string               `json:"failed"`
}

type checker struct {
	checks []check
}

func (c *checker) add(name string, ok bool, format string, args ...interface{}) bool {
	detail := ""
	if !ok && format != "" { // a passed check needs no explanation
		detail = fmt.Sprintf(format, args...)
	}
	c.checks = append(c.checks, check{Name: name, OK: ok, Detail: detail})
	return ok
}

func (c *checker) failed() []string {
	out := []string{}
	for _, ch := range c.checks {
		if !ch.OK {
			out = append(out, ch.Name+": "+ch.Detail)
		}
	}
	return out
}

type labelFlag map[string]string

func (l labelFlag) String() string { return fmt.Sprint(map[string]string(l)) }

func (l labelFlag) Set(value string) error {
	key, val, ok := strings.Cut(value, "=")
	if !ok || key == "" {
		return fmt.Errorf("label %q is not key=value", value)
	}
	l[key] = val
	return nil
}

func parseFlags() (options, error) {
	o := options{labels: map[string]string{}}
	fs := flag.NewFlagSet("keptn-conformance", flag.ContinueOnError)
	fs.StringVar(&o.natsURL, "nats", "", "NATS URL, e.g. nats://127.0.0.1:4222 (required)")
	fs.StringVar(&o.scenario, "scenario", "deployment", "deployment | release | rollback")
	fs.DurationVar(&o.timeout, "timeout", 30*time.Second, "how long to wait, in total, for the .started and .finished replies")
	fs.DurationVar(&o.settle, "settle", 300*time.Millisecond,
		"after .finished, how long to keep listening for duplicate or late replies")
	fs.StringVar(&o.project, "project", "sockshop", "data.project")
	fs.StringVar(&o.stage, "stage", "dev", "data.stage")
	fs.StringVar(&o.service, "service", "carts", "data.service")
	fs.StringVar(&o.image, "image", "docker.io/keptnexamples/carts:0.13.1",
		"deployment: configurationChange.values.image")
	fs.StringVar(&o.strategy, "strategy", "direct", "data.deployment.deploymentstrategy of the trigger")
	fs.StringVar(&o.incomingResult, "incoming-result", "pass",
		"release/rollback: data.result of the trigger (the aggregated result of the earlier tasks)")
	fs.StringVar(&o.expectStatus, "expect-status", "", "if set, the .finished data.status must equal this")
	fs.StringVar(&o.expectResult, "expect-result", "", "if set, the .finished data.result must equal this")
	fs.StringVar(&o.triggeredID, "triggered-id", "", "id of the .triggered event (default: a new UUID)")
	fs.StringVar(&o.keptnContext, "keptn-context", "", "shkeptncontext (default: a new UUID)")
	fs.StringVar(&o.gitCommitID, "gitcommitid", defaultGitCommitID, "gitcommitid extension of the trigger")
	fs.Var(labelFlag(o.labels), "label", "data.labels entry key=value (repeatable)")
	if err := fs.Parse(os.Args[1:]); err != nil {
		return o, err
	}
	if o.natsURL == "" {
		return o, fmt.Errorf("--nats is required")
	}
	if o.scenario != "deployment" && o.scenario != "release" && o.scenario != "rollback" {
		return o, fmt.Errorf("--scenario must be deployment, release or rollback, got %q", o.scenario)
	}
	if o.triggeredID == "" {
		o.triggeredID = uuid.NewString()
	}
	if o.keptnContext == "" {
		o.keptnContext = uuid.NewString()
	}
	return o, nil
}

// triggeredEvent builds the task trigger with go-utils' data types, as the shipyard-controller would.
func triggeredEvent(o options) (cloudevents.Event, error) {
	common := keptnv2.EventData{Project: o.project, Stage: o.stage, Service: o.service}
	if len(o.labels) > 0 {
		common.Labels = o.labels
	}
	var task string
	var data interface{}
	switch o.scenario {
	case "deployment":
		task = keptnv2.DeploymentTaskName
		data = keptnv2.DeploymentTriggeredEventData{
			EventData:           common,
			ConfigurationChange: keptnv2.ConfigurationChange{Values: map[string]interface{}{"image": o.image}},
			Deployment:          keptnv2.DeploymentTriggeredData{DeploymentStrategy: o.strategy},
		}
	case "release":
		// what shipyard-controller merges into a release trigger after a passed deployment task
		task = keptnv2.ReleaseTaskName
		common.Status = keptnv2.StatusSucceeded
		common.Result = keptnv2.ResultType(o.incomingResult)
		strategy, err := keptn.GetDeploymentStrategy(o.strategy)
		if err != nil {
			return cloudevents.Event{}, err
		}
		data = keptnv2.ReleaseTriggeredEventData{
			EventData: common,
			Deployment: keptnv2.DeploymentFinishedData{
				DeploymentStrategy:  strategy.String(),
				DeploymentURIsLocal: []string{fmt.Sprintf("http://%s.%s-%s:80", o.service, o.project, o.stage)},
				DeploymentNames:     []string{strategy.String()},
			},
		}
	case "rollback":
		// a rollback sequence triggered by <stage>.delivery.finished with result fail
		task = keptnv2.RollbackTaskName
		common.Status = keptnv2.StatusErrored
		common.Result = keptnv2.ResultType(o.incomingResult)
		data = keptnv2.RollbackTriggeredEventData{EventData: common}
	}
	event := cloudevents.NewEvent()
	event.SetID(o.triggeredID)
	event.SetSource(shipyardSource)
	event.SetType(keptnv2.GetTriggeredEventType(task))
	event.SetTime(time.Now().UTC())
	if err := event.SetData(cloudevents.ApplicationJSON, data); err != nil {
		return event, err
	}
	event.SetExtension(extContext, o.keptnContext)
	event.SetExtension(extSpecVersion, keptnSpecVersion)
	event.SetExtension(extGitCommitID, o.gitCommitID)
	return event, event.Validate()
}

func contains[T comparable](values []T, v T) bool {
	for _, x := range values {
		if x == v {
			return true
		}
	}
	return false
}

func keys(m map[string]interface{}) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// decodeReply turns a NATS message into what the control plane works with.
func decodeReply(c *checker, label string, r *reply) (models.KeptnContextExtendedCE, bool) {
	// 1. As the distributor and sdk-go consumers do: a structured CloudEvent.
	var ce cloudevents.Event
	if err := json.Unmarshal(r.body, &ce); err != nil {
		c.add(label+" decodes as a structured CloudEvent", false, "%v", err)
		return models.KeptnContextExtendedCE{}, false
	}
	c.add(label+" decodes as a structured CloudEvent", true, "")
	if err := ce.Validate(); err != nil {
		c.add(label+" is a valid CloudEvent", false, "%v", err)
	} else {
		c.add(label+" is a valid CloudEvent", true, "")
	}
	c.add(label+" specversion is 1.0", ce.SpecVersion() == "1.0", "specversion %q", ce.SpecVersion())
	c.add(label+" datacontenttype is application/json", ce.DataContentType() == cloudevents.ApplicationJSON,
		"datacontenttype %q", ce.DataContentType())

	// 2. As go-utils' sdk converts it: CloudEvent -> models.KeptnContextExtendedCE.
	keptnEvent, err := keptnv2.ToKeptnEvent(ce)
	if err != nil {
		c.add(label+" converts to KeptnContextExtendedCE", false, "%v", err)
		return keptnEvent, false
	}
	if err := keptnEvent.Validate(); err != nil {
		c.add(label+" KeptnContextExtendedCE.Validate()", false, "%v", err)
	} else {
		c.add(label+" KeptnContextExtendedCE.Validate()", true, "")
	}

	// 3. As the shipyard-controller's JetStream consumer and the cp-connector do: the NATS body
	//    unmarshalled straight into models.KeptnContextExtendedCE.
	var direct models.KeptnContextExtendedCE
	if err := json.Unmarshal(r.body, &direct); err != nil {
		c.add(label+" unmarshals into KeptnContextExtendedCE", false, "%v", err)
	} else if err := direct.Validate(); err != nil {
		c.add(label+" unmarshals into KeptnContextExtendedCE", false, "Validate(): %v", err)
	} else {
		c.add(label+" unmarshals into KeptnContextExtendedCE", true, "")
		c.add(label+" both decodings agree", direct.ID == keptnEvent.ID && direct.Shkeptncontext ==
			keptnEvent.Shkeptncontext && direct.Triggeredid == keptnEvent.Triggeredid &&
			*direct.Type == *keptnEvent.Type && direct.Time.Equal(keptnEvent.Time),
			"direct %s/%s/%s, via CloudEvent %s/%s/%s", direct.ID, direct.Shkeptncontext, direct.Triggeredid,
			keptnEvent.ID, keptnEvent.Shkeptncontext, keptnEvent.Triggeredid)
	}
	return keptnEvent, true
}

// checkCommon checks the envelope and EventData of a reply and returns the decoded EventData.
func checkCommon(c *checker, o options, label string, r *reply, ev models.KeptnContextExtendedCE,
	triggered cloudevents.Event) keptnv2.EventData {
	c.add(label+" shkeptncontext", ev.Shkeptncontext == o.keptnContext, "got %q, want %q",
		ev.Shkeptncontext, o.keptnContext)
	c.add(label+" triggeredid", ev.Triggeredid == triggered.ID(), "got %q, want %q", ev.Triggeredid,
		triggered.ID())
	c.add(label+" shkeptnspecversion", ev.Shkeptnspecversion != "", "missing")
	c.add(label+" has its own id", ev.ID != "" && ev.ID != triggered.ID(), "id %q", ev.ID)
	c.add(label+" source", ev.Source != nil && *ev.Source != "" && *ev.Source != shipyardSource,
		"source %q", r.Source)
	c.add(label+" time is set", !ev.Time.IsZero(), "time %q", r.Time)
	c.add(label+" is a task event type", keptnv2.IsTaskEventType(*ev.Type), "type %q", *ev.Type)
	data := keptnv2.EventData{}
	if err := keptnv2.Decode(ev.Data, &data); err != nil {
		c.add(label+" data decodes as keptnv2.EventData", false, "%v", err)
		return data
	}
	c.add(label+" data decodes as keptnv2.EventData", true, "")
	// NewEventScope [keptn:shipyard-controller/models/eventscope.go] drops events without these
	c.add(label+" data.project", data.Project == o.project, "got %q, want %q", data.Project, o.project)
	c.add(label+" data.stage", data.Stage == o.stage, "got %q, want %q", data.Stage, o.stage)
	c.add(label+" data.service", data.Service == o.service, "got %q, want %q", data.Service, o.service)
	for k, v := range o.labels {
		c.add(label+" data.labels."+k+" echoed", data.Labels[k] == v, "got %q, want %q", data.Labels[k], v)
	}
	if data.Status != "" || r.Data["status"] != nil {
		c.add(label+" data.status is a keptnv2.StatusType", contains(statusTypes, data.Status),
			"status %q", data.Status)
	}
	if data.Result != "" || r.Data["result"] != nil {
		c.add(label+" data.result is a keptnv2.ResultType", contains(resultTypes, data.Result),
			"result %q", data.Result)
	}
	return data
}

func stringList(v interface{}) ([]string, bool) {
	items, ok := v.([]interface{})
	if !ok {
		return nil, false
	}
	out := []string{}
	for _, item := range items {
		s, ok := item.(string)
		if !ok {
			return nil, false
		}
		out = append(out, s)
	}
	return out, true
}

// checkDeployment checks the deployment block of a deployment.finished with go-utils.
// An errored/failed deployment ends the sequence, so nothing downstream reads its block; like helm-service
// (derived/07) it may then be the zero DeploymentFinishedData, and only its shape is checked.
func checkDeployment(c *checker, finished *reply, ev models.KeptnContextExtendedCE,
	succeeded bool) *deploymentSummary {
	out := &deploymentSummary{}
	fd := keptnv2.DeploymentFinishedEventData{}
	if err := keptnv2.Decode(ev.Data, &fd); err != nil {
		c.add("finished data decodes as keptnv2.DeploymentFinishedEventData", false, "%v", err)
		return out
	}
	c.add("finished data decodes as keptnv2.DeploymentFinishedEventData", true, "")
	out.DeploymentStrategy = fd.Deployment.DeploymentStrategy
	out.DeploymentNames = fd.Deployment.DeploymentNames
	out.DeploymentURIsLocal = fd.Deployment.DeploymentURIsLocal
	out.DeploymentURIsPublic = fd.Deployment.DeploymentURIsPublic

	// release.triggered.deployment.deploymentstrategy is parsed like this by helm-service
	strategy, err := keptn.GetDeploymentStrategy(fd.Deployment.DeploymentStrategy)
	if err == nil {
		out.ParsedDeploymentStrategy = strategy.String()
	}
	if succeeded {
		c.add("deployment.deploymentstrategy parses with keptn.GetDeploymentStrategy", err == nil, "%v", err)
		c.add("deployment.deploymentNames non-empty", len(fd.Deployment.DeploymentNames) > 0, "got %v",
			fd.Deployment.DeploymentNames)
	}

	// Go's encoding/json matches keys case-insensitively; Keptn's JS bridge and other consumers do not,
	// so the exact spelling of every key is checked on the raw JSON too.
	raw, _ := finished.Data["deployment"].(map[string]interface{})
	if !c.add("data.deployment is an object", raw != nil, "got %T", finished.Data["deployment"]) {
		return out
	}
	for _, key := range []string{"deploymentstrategy", "deploymentURIsLocal", "deploymentNames"} {
		_, present := raw[key]
		c.add("data.deployment."+key+" present with exact spelling", present, "keys %v", keys(raw))
	}
	uris, ok := stringList(raw["deploymentURIsLocal"])
	if succeeded || raw["deploymentURIsLocal"] != nil {
		c.add("deployment.deploymentURIsLocal decoded", ok, "got %#v", raw["deploymentURIsLocal"])
	}
	for _, uri := range uris {
		u, err := url.Parse(uri)
		c.add("deploymentURIsLocal "+uri+" is an absolute URL", err == nil && u.Scheme != "" && u.Host != "",
			"%v", err)
	}
	if public, present := raw["deploymentURIsPublic"]; present {
		_, ok := stringList(public)
		c.add("deployment.deploymentURIsPublic decoded", ok, "got %#v", public)
	}
	if commit, present := raw["gitCommit"]; present {
		s, _ := commit.(string)
		out.GitCommit = s
		c.add("deployment.gitCommit is a 40-hex commit id", len(s) == 40 && strings.Trim(s, "0123456789abcdef") == "",
			"got %#v", commit)
	}
	return out
}

func run(o options) (summary, error) {
	start := time.Now()
	s := summary{Scenario: o.scenario, GoUtils: goUtilsVersion(), Checks: []check{}, Failed: []string{}}
	c := &checker{}

	triggered, err := triggeredEvent(o)
	if err != nil {
		return s, fmt.Errorf("cannot build the trigger: %w", err)
	}
	body, err := json.Marshal(triggered) // what the shipyard-controller's publisher does
	if err != nil {
		return s, err
	}
	_ = json.Unmarshal(body, &s.Triggered)

	nc, err := nats.Connect(o.natsURL, nats.Name("keptn-conformance"), nats.Timeout(5*time.Second))
	if err != nil {
		return s, fmt.Errorf("cannot connect to %s: %w", o.natsURL, err)
	}
	defer nc.Close()

	task, _, err := keptnv2.ParseTaskEventType(triggered.Type())
	if err != nil {
		return s, err
	}
	startedType := keptnv2.GetStartedEventType(task)
	finishedType := keptnv2.GetFinishedEventType(task)
	// One connection, one channel: NATS keeps the order in which the server delivered the messages.
	msgs := make(chan *nats.Msg, 64)
	for _, subject := range []string{startedType, finishedType} {
		if _, err := nc.ChanSubscribe(subject, msgs); err != nil {
			return s, err
		}
	}
	if err := nc.Flush(); err != nil {
		return s, err
	}
	if err := nc.Publish(triggered.Type(), body); err != nil {
		return s, err
	}
	if err := nc.Flush(); err != nil {
		return s, err
	}

	var replies, ours []*reply
	var foreign []string
	deadline := time.NewTimer(o.timeout)
	defer deadline.Stop()
	var settle <-chan time.Time
	haveFinished := false
wait:
	for {
		select {
		case m := <-msgs:
			r := &reply{Subject: m.Subject, Arrival: len(replies) + 1, body: m.Data}
			replies = append(replies, r)
			if err := json.Unmarshal(m.Data, &r.Raw); err != nil {
				c.add(fmt.Sprintf("reply #%d on %s is JSON", r.Arrival, m.Subject), false, "%v", err)
				continue
			}
			r.fill()
			if r.Trigger != triggered.ID() && r.Context != o.keptnContext {
				foreign = append(foreign, r.ID)
				continue
			}
			ours = append(ours, r)
			if r.Type == finishedType && !haveFinished {
				haveFinished = true
				settle = time.After(o.settle)
			}
		case <-settle:
			break wait
		case <-deadline.C:
			break wait
		}
	}
	s.Replies = len(ours)

	var started, finished []*reply
	for _, r := range ours {
		c.add(fmt.Sprintf("reply #%d subject equals its type", r.Arrival), r.Subject == r.Type,
			"subject %q, type %q", r.Subject, r.Type)
		switch r.Type {
		case startedType:
			started = append(started, r)
		case finishedType:
			finished = append(finished, r)
		default:
			c.add(fmt.Sprintf("reply #%d has a reply type", r.Arrival), false, "type %q", r.Type)
		}
	}
	c.add("no reply for another trigger", len(foreign) == 0, "unexpected replies %v", foreign)
	if len(started) == 0 {
		c.add("one .started", false, "no .started (%s) received within %s", startedType, o.timeout)
	} else {
		c.add("one .started", len(started) == 1, "%d .started received", len(started))
	}
	if len(finished) == 0 {
		c.add("one .finished", false, "no .finished (%s) received within %s", finishedType, o.timeout)
	} else {
		c.add("one .finished", len(finished) == 1, "%d .finished received", len(finished))
	}
	if len(started) > 0 && len(finished) > 0 {
		s.Started, s.Finished = started[0], finished[0]
		c.add(".started arrives before .finished", s.Started.Arrival < s.Finished.Arrival,
			".started was reply #%d, .finished #%d", s.Started.Arrival, s.Finished.Arrival)
	} else if len(started) > 0 {
		s.Started = started[0]
	} else if len(finished) > 0 {
		s.Finished = finished[0]
	}

	var startedEvent, finishedEvent models.KeptnContextExtendedCE
	startedOK, finishedOK := false, false
	if s.Started != nil {
		if startedEvent, startedOK = decodeReply(c, ".started", s.Started); startedOK {
			checkCommon(c, o, ".started", s.Started, startedEvent, triggered)
		}
	}
	if s.Finished != nil {
		if finishedEvent, finishedOK = decodeReply(c, ".finished", s.Finished); finishedOK {
			data := checkCommon(c, o, ".finished", s.Finished, finishedEvent, triggered)
			s.Status, s.Result, s.Message = string(data.Status), string(data.Result), data.Message
			// api-service rejects a .finished without them; the shipyard-controller counts "" as fail/unknown
			c.add(".finished data.status non-empty", data.Status != "", "missing")
			c.add(".finished data.result non-empty", data.Result != "", "missing")
			if o.expectStatus != "" {
				c.add(".finished data.status expected", string(data.Status) == o.expectStatus,
					"got %q, want %q (message %q)", data.Status, o.expectStatus, data.Message)
			}
			if o.expectResult != "" {
				c.add(".finished data.result expected", string(data.Result) == o.expectResult,
					"got %q, want %q (message %q)", data.Result, o.expectResult, data.Message)
			}
			switch o.scenario {
			case "deployment":
				s.Deployment = checkDeployment(c, s.Finished, finishedEvent, data.Status == keptnv2.StatusSucceeded)
			case "release":
				rd := keptnv2.ReleaseFinishedEventData{}
				err := keptnv2.Decode(finishedEvent.Data, &rd)
				c.add("finished data decodes as keptnv2.ReleaseFinishedEventData", err == nil, "%v", err)
			case "rollback":
				rd := keptnv2.RollbackFinishedEventData{}
				err := keptnv2.Decode(finishedEvent.Data, &rd)
				c.add("finished data decodes as keptnv2.RollbackFinishedEventData", err == nil, "%v", err)
			}
		}
	}
	if startedOK && finishedOK {
		c.add(".started time not after .finished time", !startedEvent.Time.After(finishedEvent.Time),
			".started %s, .finished %s", s.Started.Time, s.Finished.Time)
	}

	s.Checks = c.checks
	s.Failed = c.failed()
	s.OK = len(s.Failed) == 0
	s.ElapsedMS = time.Since(start).Milliseconds()
	return s, nil
}

func (r *reply) fill() {
	str := func(key string) string {
		s, _ := r.Raw[key].(string)
		return s
	}
	r.ID, r.Type, r.Source, r.Time = str("id"), str("type"), str("source"), str("time")
	r.Context, r.Trigger, r.SpecVer = str(extContext), str(extTriggeredID), str(extSpecVersion)
	r.Data, _ = r.Raw["data"].(map[string]interface{})
}

// goUtilsVersion names the go-utils module this binary was built with.
func goUtilsVersion() string {
	if info, ok := debug.ReadBuildInfo(); ok {
		for _, dep := range info.Deps {
			if dep.Path == "github.com/keptn/go-utils" {
				return dep.Version
			}
		}
	}
	return "unknown"
}

func main() {
	o, err := parseFlags()
	if err != nil {
		fmt.Fprintln(os.Stderr, "keptn-conformance:", err)
		os.Exit(2)
	}
	s, err := run(o)
	if err != nil {
		fmt.Fprintln(os.Stderr, "keptn-conformance:", err)
		os.Exit(2)
	}
	enc := json.NewEncoder(os.Stdout)
	enc.SetIndent("", "  ")
	if err := enc.Encode(s); err != nil {
		fmt.Fprintln(os.Stderr, "keptn-conformance:", err)
		os.Exit(2)
	}
	for _, f := range s.Failed {
		fmt.Fprintln(os.Stderr, "FAIL", f)
	}
	if !s.OK {
		os.Exit(1)
	}
}
