package config

// The field names of each kind of mapping, in one place: the parser accepts
// exactly these, and a test checks that the JSON Schema declares exactly
// these too.
const (
	fVersion  = "version"
	fDefaults = "defaults"
	fForwards = "forwards"
	fProxy    = "proxy"

	fName             = "name"
	fContext          = "context"
	fNamespace        = "namespace"
	fAddress          = "address"
	fAllowNonLoopback = "allowNonLoopback"
	fWaitForReady     = "waitForReady"
	fBalance          = "balance"
	fSpare            = "spare"
	fPorts            = "ports"
	fGroups           = "groups"
	fEnabled          = "enabled"
	fHealth           = "health"
	fEnv              = "env"
	fRelay            = "relay"

	fService     = "service"
	fPod         = "pod"
	fDeployment  = "deployment"
	fStatefulSet = "statefulset"
	fSelector    = "selector"
	fHost        = "host"

	fLocal    = "local"
	fRemote   = "remote"
	fProtocol = "protocol"

	fTCP       = "tcp"
	fHTTP      = "http"
	fPort      = "port"
	fInterval  = "interval"
	fTimeout   = "timeout"
	fThreshold = "threshold"

	// fNamespace above is also the relay's.
	fImage        = "image"
	fNodeSelector = "nodeSelector"
	fTolerations  = "tolerations"
	fResources    = "resources"

	fKey               = "key"
	fOperator          = "operator"
	fValue             = "value"
	fEffect            = "effect"
	fTolerationSeconds = "tolerationSeconds"

	fRequests = "requests"
	fLimits   = "limits"

	// fHTTP above is also the proxy's HTTP address.
	fSOCKS5     = "socks5"
	fNamespaces = "namespaces"
	fContexts   = "contexts"
)

// mappingKind names a kind of mapping in the document; the names match the
// schema's "$defs" (with "" for the top level).
type mappingKind string

const (
	kindTop      mappingKind = ""
	kindDefaults mappingKind = "defaults"
	kindForward  mappingKind = "forward"
	kindPort     mappingKind = "portMapping"
	// kindHealth is a forward's health; kindDefaultsHealth the defaults
	// block's, which has no port.
	kindHealth         mappingKind = "health"
	kindDefaultsHealth mappingKind = "defaultsHealth"
	kindProxy          mappingKind = "proxy"
	kindRelay          mappingKind = "relay"
	kindToleration     mappingKind = "toleration"
	kindResources      mappingKind = "resources"
)

// targetFields lists the target fields in TargetKind order.
var targetFields = [...]struct {
	field string
	kind  TargetKind
}{
	{fService, Service},
	{fPod, Pod},
	{fDeployment, Deployment},
	{fStatefulSet, StatefulSet},
	{fSelector, Selector},
	{fHost, Host},
}

// targetList names the target fields in messages.
const targetList = "service, pod, deployment, statefulset, selector or host"

// fieldsOf returns the fields a mapping of kind k accepts.
func fieldsOf(k mappingKind) []string {
	switch k {
	case kindTop:
		return []string{fVersion, fDefaults, fForwards, fProxy}
	case kindDefaults:
		return []string{fContext, fNamespace, fAddress, fWaitForReady, fBalance, fSpare, fHealth, fRelay}
	case kindForward:
		return []string{
			fName, fContext, fNamespace,
			fService, fPod, fDeployment, fStatefulSet, fSelector, fHost,
			fPorts, fGroups, fEnabled, fAddress, fAllowNonLoopback, fWaitForReady, fBalance, fSpare, fHealth, fEnv, fRelay,
		}
	case kindPort:
		return []string{fLocal, fRemote, fProtocol}
	case kindHealth:
		return []string{fTCP, fHTTP, fPort, fInterval, fTimeout, fThreshold}
	case kindDefaultsHealth:
		return []string{fTCP, fHTTP, fInterval, fTimeout, fThreshold}
	case kindProxy:
		return []string{fSOCKS5, fHTTP, fNamespaces, fContexts}
	case kindRelay:
		return []string{fImage, fNamespace, fNodeSelector, fTolerations, fResources}
	case kindToleration:
		return []string{fKey, fOperator, fValue, fEffect, fTolerationSeconds}
	case kindResources:
		return []string{fRequests, fLimits}
	}
	return nil
}
