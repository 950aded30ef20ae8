// SCIM User response converter: FusionAuth user -> SCIM User JSON.
// The server has already set id, externalId, schemas and meta. Only one email
// (as "work") and one phone (as "mobile") come back, both flagged primary;
// each block of user.data.extensions comes back whole and is named in schemas.
function convert(scimUser, user) {
  var data = user.data || {};
  scimUser.active = user.active;
  scimUser.userName = user.username;
  scimUser.name = {
    givenName: user.firstName,
    familyName: user.lastName,
    middleName: user.middleName,
    formatted: user.fullName,
    honorificPrefix: data.honorificPrefix,
    honorificSuffix: data.honorificSuffix
  };

  if (user.email) {
    scimUser.emails = [{primary: true, value: user.email, type: "work"}];
  }
  if (user.mobilePhone) {
    scimUser.phoneNumbers = [
      {primary: true, value: user.mobilePhone, type: "mobile"}
    ];
  }

  var extensions = data.extensions || {};
  Object.keys(extensions).forEach(function (urn) {
    if (scimUser.schemas.indexOf(urn) === -1) {
      scimUser.schemas.push(urn);
    }
    scimUser[urn] = extensions[urn];
  });
}
