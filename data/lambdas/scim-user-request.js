// SCIM User request converter: SCIM User JSON -> FusionAuth user.
// Behaves as FusionAuth's default: the primary email and phone survive, the
// rest of the SCIM attributes that have no FusionAuth field are dropped, and
// every extension block named in `schemas` is kept whole in user.data.extensions.
function convert(user, options, scimUser) {
  var name = scimUser.name || {};
  user.active = scimUser.active;
  user.username = scimUser.userName;
  user.firstName = name.givenName;
  user.lastName = name.familyName;
  user.middleName = name.middleName;
  user.fullName = name.formatted;
  user.password = scimUser.password;
  user.data = user.data || {};
  user.data.honorificPrefix = name.honorificPrefix;
  user.data.honorificSuffix = name.honorificSuffix;

  (scimUser.emails || []).forEach(function (email) {
    if (email && email.primary === true) {
      user.email = email.value;
    }
  });
  (scimUser.phoneNumbers || []).forEach(function (phone) {
    if (phone && phone.primary === true) {
      user.mobilePhone = phone.value;
    }
  });

  user.data.extensions = {};
  (scimUser.schemas || []).forEach(function (urn) {
    if (urn !== "urn:ietf:params:scim:schemas:core:2.0:User") {
      user.data.extensions[urn] = scimUser[urn] || {};
    }
  });
}
